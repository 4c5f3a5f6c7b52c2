#include "http/ws_session.h"

// GCC 12 at -O2 warns that moving a Result<wire::Response> (a std::variant holding an Error) may
// read Error::errnum uninitialized: a false positive of its variant move,
// which appears or not with the inlining around it (here since ClientStream has three kinds).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cstdio>
#include <utility>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>

#include "http/api_json.h"
#include "http/principal.h"
#include "http/transcript.h"

namespace mp::http {
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;

namespace {

// The recent output a catchup message carries when the client gives no ?since.
constexpr uint64_t kCatchupBytes = 16 * 1024;
// read_output requests one catching-up client keeps in flight: the answers come back in order
// over the one link, and a pipeline hides the round trip to the supervisor.
constexpr uint32_t kReadsInFlight = 4;
// After a read the link or the supervisor refused for now (a full outbox, capacity).
constexpr std::chrono::milliseconds kReadRetryDelay{50};
// Client messages: a stdin line, a resize. Larger ones are refused by the WebSocket layer.
constexpr size_t kMaxClientMessageBytes = 1024 * 1024;

size_t StreamIndex(wire::OutputStream s) { return static_cast<size_t>(s); }

}  // namespace

WsSession::WsSession(ApiContext& ctx, ClientStream&& stream, wire::SessionInfo info,
                     std::optional<uint64_t> since, Principal principal,
                     PrincipalConnections::Slot slot, AuditOrigin origin)
    : ctx_(ctx),
      keep_(ctx.shared_from_this()),
      ws_(std::move(stream)),
      info_(std::move(info)),
      since_(since),
      may_input_(principal.Has(Right::kInput)),
      rights_(principal.rights()),
      principal_(principal.ToString()),
      token_id_(principal.kind == Principal::Kind::kToken ? principal.id : std::string()),
      origin_(std::move(origin)),
      principal_slot_(std::move(slot)) {
  ctx_.metrics.WsOpened();
}

WsSession::WsSession(ApiContext& ctx, websocket::stream<ClientStream>&& ws, wire::SessionInfo info,
                     std::optional<uint64_t> since, Principal principal,
                     PrincipalConnections::Slot slot, AuditOrigin origin)
    : ctx_(ctx),
      keep_(ctx.shared_from_this()),
      ws_(std::move(ws)),
      info_(std::move(info)),
      since_(since),
      may_input_(principal.Has(Right::kInput)),
      rights_(principal.rights()),
      principal_(principal.ToString()),
      token_id_(principal.kind == Principal::Kind::kToken ? principal.id : std::string()),
      origin_(std::move(origin)),
      principal_slot_(std::move(slot)) {
  ctx_.metrics.WsOpened();
}

WsSession::~WsSession() {
  if (token_registered_) ctx_.principal_connections.RemoveSocket(token_id_, this);
  ctx_.metrics.WsClosed();
  --ctx_.connections;
}

void WsSession::Configure(websocket::stream<ClientStream>& ws, bool echo_protocol) {
  // The HTTP read deadline no longer applies; the WebSocket has its own (idle pings).
  beast::get_lowest_layer(ws).expires_never();
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws.set_option(websocket::stream_base::decorator([echo_protocol](websocket::response_type& res) {
    res.set(beast::http::field::server, "monkeyproof-api");
    // A browser that offered subprotocols fails a handshake that selects none; the token's
    // own subprotocol is never the one selected (it would echo the secret).
    if (echo_protocol) {
      res.set(beast::http::field::sec_websocket_protocol,
              beast::string_view(kWsProtocol.data(), kWsProtocol.size()));
    }
  }));
  ws.read_message_max(kMaxClientMessageBytes);
  // One frame per message: Beast's default splits each ~60 KiB output message into 4 KiB
  // frames, fifteen sends where one does (bench/README.md, api_bench).
  ws.auto_fragment(false);
}

void WsSession::Run(beast::http::request<beast::http::string_body> request) {
  const auto offered = request[beast::http::field::sec_websocket_protocol];
  Configure(ws_, OffersWsProtocol(std::string_view(offered.data(), offered.size())));
  ws_.async_accept(request, beast::bind_front_handler(&WsSession::OnAccept, shared_from_this()));
}

void WsSession::Start() {
  // Accepted by WsAuthGate with Configure's options; the idle timeouts take over from its
  // deadline for the auth message.
  beast::get_lowest_layer(ws_).expires_never();
  ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws_.read_message_max(kMaxClientMessageBytes);
  OnAccept({});
}

void WsSession::OnAccept(beast::error_code ec) {
  if (ec) return;  // the client went away during the handshake
  if (!token_id_.empty()) {
    // Registered for revocation before anything is sent; a token that ended between the
    // upgrade's auth and now ends the WebSocket at once.
    ctx_.principal_connections.AddSocket(token_id_, shared_from_this());
    token_registered_ = true;
    const TokenRecord* record = nullptr;
    if (ctx_.token_store.Lookup(token_id_, WallClockMs(), &record) == TokenVerdict::kValid) {
      token_expires_at_ms_ = record->expires_at_ms;
      ArmExpiry(token_expires_at_ms_);
    } else {
      EndForToken(TokenEnded().value_or("token expired"));
      return;
    }
  }
  ctx_.hub.Attach(info_.id, shared_from_this());
  attached_ = true;
  DoRead();
  if (since_) {
    next_ = *since_;
    Enqueue(WsCatchupJson(info_, "", next_, next_));
    mode_ = Mode::kCatchUp;
    IssueRead();
    return;
  }
  // No offset given: recent output in the catchup message, then everything after it.
  const uint64_t from = info_.output_bytes > kCatchupBytes ? info_.output_bytes - kCatchupBytes : 0;
  ctx_.link.Call(wire::ReadOutputRequest{info_.id, from, static_cast<uint32_t>(kCatchupBytes)},
                 [self = shared_from_this(), from](Result<wire::Response> r) {
                   if (self->closing_) return;
                   const wire::OutputRead* tail = nullptr;
                   if (r && r->ok()) tail = std::get_if<wire::OutputRead>(&r->body);
                   wire::OutputRead none;
                   none.next = from;  // no tail: an empty catchup, then everything from `from`
                   self->SendCatchup(tail != nullptr ? *tail : none);
                 });
}

void WsSession::SendCatchup(const wire::OutputRead& tail) {
  // The original's catchup data is its output buffer, stderr marked "[stderr] "; offset and
  // next still count output bytes (the marks are not output).
  const bool at_line_start = !tail.chunks.empty() && tail.chunks.front().offset == 0;
  std::string raw = MarkedText(tail, at_line_start);
  const uint64_t offset = tail.chunks.empty() ? tail.next : tail.chunks.front().offset;
  next_ = tail.next;
  // A character cut at the end of the tail is carried into the next message, as between two
  // output messages (ToValidUtf8 would turn both of its halves into U+FFFD).
  std::string text;
  Utf8Carry carry;
  carry.Feed(raw, &text);
  if (carry.carried() > 0 && !tail.chunks.empty()) {
    const size_t s = StreamIndex(tail.chunks.back().stream);
    carry_[s] = carry;
    carry_start_[s] = next_ - carry.carried();
  } else {
    carry.Flush(&text);
  }
  Enqueue(WsCatchupJson(info_, text, offset, ResumePoint()));
  mode_ = Mode::kCatchUp;
  IssueRead();
}

uint64_t WsSession::ResumePoint() const {
  uint64_t p = next_;
  for (size_t i = 0; i < carry_.size(); ++i) {
    if (carry_[i].carried() > 0) p = std::min(p, carry_start_[i]);
  }
  return p;
}

void WsSession::Deliver(wire::OutputStream stream, uint64_t offset, const uint8_t* data,
                        size_t size) {
  const uint64_t end = offset + size;
  if (end <= next_) return;  // already delivered
  const size_t skip = static_cast<size_t>(next_ - offset);
  data += skip;
  size -= skip;
  offset = next_;
  const size_t s = StreamIndex(stream);
  Utf8Carry& carry = carry_[s];
  const uint64_t message_offset = carry.carried() > 0 ? carry_start_[s] : offset;
  std::string text;
  carry.Feed(std::string_view(reinterpret_cast<const char*>(data), size), &text);
  if (carry.carried() > 0) carry_start_[s] = end - carry.carried();
  next_ = end;
  if (!text.empty()) Enqueue(WsOutputJson(stream, text, message_offset, ResumePoint()));
}

void WsSession::DeliverGap(uint64_t from, uint64_t to) {
  if (to <= next_) return;
  FlushCarries();
  Enqueue(WsGapJson(std::max(from, next_), to));
  next_ = to;
}

void WsSession::FlushCarries() {
  for (size_t i = 0; i < carry_.size(); ++i) {
    if (carry_[i].carried() == 0) continue;
    std::string text;
    carry_[i].Flush(&text);
    Enqueue(WsOutputJson(static_cast<wire::OutputStream>(i), text, carry_start_[i], next_));
  }
}

void WsSession::OnOutput(const wire::OutputEvent& event) {
  if (mode_ != Mode::kLive || closing_) return;
  if (event.offset > next_) {
    // Output we never saw (the hub subscribed after it, or the link skipped): read it.
    LeaveLive(Mode::kCatchUp);
    IssueRead();
    return;
  }
  Deliver(event.stream, event.offset, event.data.data(), event.data.size());
  if (outbox_bytes_ > ctx_.config.ws_outbox_bytes) {
    // Too slow for live output: say so, stop taking it, and read from our offset as the
    // client drains (OnWrite restarts the reads at half the limit).
    Enqueue(WsLaggedJson(ResumePoint()));
    ctx_.metrics.CountWsLagged();
    LeaveLive(Mode::kCatchUp);
  }
}

void WsSession::OnGap(const wire::GapEvent& event) {
  if (mode_ != Mode::kLive || closing_) return;
  if (event.range.from > next_) {
    LeaveLive(Mode::kCatchUp);
    IssueRead();
    return;
  }
  DeliverGap(event.range.from, event.range.to);
}

void WsSession::OnExit(const wire::EndRecord& end) {
  end_ = end;
  // Live: the hub's subscription delivered every byte before this, and so did we.
  if (mode_ == Mode::kLive) FinishIfDone();
}

void WsSession::OnLinkDown() {
  if (mode_ == Mode::kLive) LeaveLive(Mode::kCatchUp);
}

void WsSession::OnLinkUp() {
  if (mode_ == Mode::kLive) LeaveLive(Mode::kCatchUp);
  IssueRead();
}

void WsSession::EnterLive() {
  RestartReads();  // answers to reads still in flight are not needed
  mode_ = Mode::kLive;
  ctx_.hub.GoLive(info_.id, this, next_);
}

void WsSession::LeaveLive(Mode next_mode) {
  if (mode_ == Mode::kLive) ctx_.hub.LeaveLive(info_.id, this);
  mode_ = next_mode;
}

void WsSession::RestartReads() {
  ++read_epoch_;
  reads_in_flight_ = 0;
  read_ahead_ = next_;
}

void WsSession::RetryReadsLater() {
  if (read_retry_pending_) return;
  read_retry_pending_ = true;
  auto timer = std::make_shared<boost::asio::steady_timer>(ctx_.io, kReadRetryDelay);
  timer->async_wait([self = shared_from_this(), timer](boost::system::error_code) {
    self->read_retry_pending_ = false;
    self->IssueRead();
  });
}

void WsSession::IssueRead() {
  if (mode_ != Mode::kCatchUp || closing_ || read_retry_pending_ || !ctx_.link.up()) return;
  if (reads_in_flight_ == 0) read_ahead_ = next_;
  const uint64_t limit = ctx_.config.ws_outbox_bytes;
  // Pipeline only while answers come back full: after a short one, the reads behind it would
  // start at the wrong offset and be thrown away.
  const uint32_t depth = last_read_full_ ? kReadsInFlight : 1;
  while (reads_in_flight_ < depth) {
    if (reads_in_flight_ == 0) {
      if (outbox_bytes_ > limit / 2) return;  // OnWrite calls again
    } else if (read_ahead_ >= known_total_ ||
               outbox_bytes_ + (reads_in_flight_ + 1) * wire::kMaxChunkBytes > limit) {
      return;  // read ahead only into output known to exist, and what the outbox can take
    }
    const uint64_t since = read_ahead_;
    read_ahead_ += wire::kMaxChunkBytes;
    ++reads_in_flight_;
    ctx_.link.Call(
        wire::ReadOutputRequest{info_.id, since, static_cast<uint32_t>(wire::kMaxChunkBytes)},
        [self = shared_from_this(), epoch = read_epoch_, since](Result<wire::Response> r) {
          self->OnReadOutput(epoch, since, std::move(r));
        });
  }
}

void WsSession::OnReadOutput(uint64_t epoch, uint64_t since, Result<wire::Response> r) {
  if (epoch != read_epoch_) return;  // a pipeline given up: its reads start elsewhere
  --reads_in_flight_;
  if (closing_ || mode_ != Mode::kCatchUp) return;
  if (!r) {
    RestartReads();
    // Down: OnLinkUp reads again. Up: the link refused the request (its outbox is full);
    // asking again at once would only spin.
    if (ctx_.link.up()) RetryReadsLater();
    return;
  }
  if (since != next_) {  // cannot happen within one pipeline; start over from next_ if it does
    RestartReads();
    IssueRead();
    return;
  }
  if (!r->ok()) {
    const auto& error = std::get<wire::ErrorBody>(r->body);
    Enqueue(WsErrorJson(FromSupervisor(error)));
    if (error.code == wire::ErrorCode::kNotFound || error.code == wire::ErrorCode::kInternal ||
        error.code == wire::ErrorCode::kBadRequest) {
      // Gone, or a read that will fail the same way again (a damaged transcript): the client
      // has the error and its offset, and may reconnect.
      LeaveLive(Mode::kDone);
      Close();
      return;
    }
    RestartReads();
    RetryReadsLater();
    return;
  }
  const auto* read = std::get_if<wire::OutputRead>(&r->body);
  if (read == nullptr) return;
  known_total_ = std::max(known_total_, read->total);
  size_t gap = 0;
  size_t pos = 0;
  for (const auto& chunk : read->chunks) {
    while (gap < read->gaps.size() && read->gaps[gap].from <= chunk.offset) {
      DeliverGap(read->gaps[gap].from, read->gaps[gap].to);
      ++gap;
    }
    if (chunk.offset > next_) DeliverGap(next_, chunk.offset);  // unannounced hole: say so
    Deliver(chunk.stream, chunk.offset, read->data.data() + pos, chunk.length);
    pos += chunk.length;
  }
  for (; gap < read->gaps.size(); ++gap) DeliverGap(read->gaps[gap].from, read->gaps[gap].to);
  if (read->next > next_) DeliverGap(next_, read->next);
  // A read that ended short of its limit (chunk or gap caps, a hole, the end) leaves the
  // pipelined reads after it starting past next_, or before it: start over from next_.
  last_read_full_ = next_ == since + wire::kMaxChunkBytes;
  if (!last_read_full_) RestartReads();
  if (next_ >= read->total) {
    if (read->ended) {
      // Nothing more will come: no subscription needed; FinishIfDone sends the exit.
      mode_ = Mode::kLive;
      if (end_) {
        FinishIfDone();
      } else {
        ctx_.link.Call(wire::GetRequest{info_.id},
                       [self = shared_from_this()](Result<wire::Response> g) {
                         const wire::SessionInfo* info = nullptr;
                         if (g && g->ok()) info = std::get_if<wire::SessionInfo>(&g->body);
                         if (info != nullptr && info->end) {
                           self->end_ = info->end;
                           self->FinishIfDone();
                         }
                       });
      }
      return;
    }
    EnterLive();  // caught up; later output arrives through the hub
    if (end_) FinishIfDone();
    return;
  }
  IssueRead();
}

void WsSession::FinishIfDone() {
  if (!end_ || closing_ || mode_ != Mode::kLive) return;
  LeaveLive(Mode::kDone);
  FlushCarries();
  SendExit(*end_);
}

void WsSession::SendExit(const wire::EndRecord& end) {
  if (end.reason != wire::EndReason::kExit && end.reason != wire::EndReason::kSpawnError) {
    Enqueue(WsKilledJson());
  }
  Enqueue(WsExitJson(info_, end, next_));
  closing_ = true;  // OnWrite closes once the outbox is empty
  if (!writing_) Close();
}

void WsSession::Enqueue(std::string text) {
  ctx_.metrics.AddWsBytes(text.size());
  outbox_bytes_ += text.size();
  outbox_.push_back(std::move(text));
  if (!writing_) DoWrite();
}

void WsSession::DoWrite() {
  if (outbox_.empty()) return;
  writing_ = true;
  ws_.text(true);
  ws_.async_write(boost::asio::buffer(outbox_.front()),
                  beast::bind_front_handler(&WsSession::OnWrite, shared_from_this()));
}

void WsSession::OnWrite(beast::error_code ec, size_t) {
  writing_ = false;
  if (ec) {
    outbox_.clear();
    outbox_bytes_ = 0;
    closing_ = true;
    if (attached_) ctx_.hub.Detach(info_.id, this);
    attached_ = false;
    return;
  }
  outbox_bytes_ -= outbox_.front().size();
  outbox_.pop_front();
  if (!outbox_.empty()) {
    DoWrite();
  } else if (closing_) {
    Close();
    return;
  }
  if (mode_ == Mode::kCatchUp) IssueRead();
}

void WsSession::Close() {
  closing_ = true;
  if (attached_) ctx_.hub.Detach(info_.id, this);
  attached_ = false;
  if (writing_ || !ws_.is_open()) return;
  ws_.async_close(close_reason_, [self = shared_from_this()](beast::error_code) {});
}

void WsSession::DoRead() {
  ws_.async_read(read_buffer_, beast::bind_front_handler(&WsSession::OnRead, shared_from_this()));
}

void WsSession::OnRead(beast::error_code ec, size_t) {
  if (ec) {
    // Closed by the client, a failed ping, or an oversized message: stop everything.
    closing_ = true;
    if (attached_) ctx_.hub.Detach(info_.id, this);
    attached_ = false;
    return;
  }
  HandleClientMessage(ws_.got_binary());
}

void WsSession::HandleClientMessage(bool binary) {
  std::string message = beast::buffers_to_string(read_buffer_.data());
  read_buffer_.consume(read_buffer_.size());
  // The token may have been revoked or have expired since the upgrade: nothing of a message
  // is acted on before it is checked.
  if (auto ended = TokenEnded()) {
    EndForToken(*ended);
    return;
  }
  // Every client message is input of some kind (stdin, resize, signal, close-stdin).
  if (!may_input_) {
    Enqueue(WsErrorJson(ApiError{403, "forbidden", "this token lacks the input right", {}}));
    DoRead();
    return;
  }
  if (binary) {
    SendStdin(std::move(message), 0);
    return;
  }
  auto parsed = ParseWsClientMessage(message);
  if (auto* error = std::get_if<ApiError>(&parsed)) {
    Enqueue(WsErrorJson(*error));
    DoRead();
    return;
  }
  auto& m = std::get<WsClientMessage>(parsed);
  auto done = [self = shared_from_this()](Result<wire::Response> r) {
    self->AfterClientCall(std::move(r));
  };
  if (auto* in = std::get_if<WsStdin>(&m)) {
    SendStdin(std::move(in->data), 0);
  } else if (auto* resize = std::get_if<WsResize>(&m)) {
    ctx_.link.Call(
        wire::ResizeRequest{info_.id, resize->size, principal_, origin_.client, origin_.via}, done);
  } else if (auto* sig = std::get_if<WsSignal>(&m)) {
    // The HTTP signal route's rule: only WINCH and CONT with input alone.
    if (auto missing = MissingSignalRight(rights_, sig->signal)) {
      Enqueue(WsErrorJson(ApiError{403, "forbidden", std::move(*missing), "/signal"}));
      DoRead();
      return;
    }
    ctx_.link.Call(
        wire::SignalRequest{info_.id, sig->signal, principal_, origin_.client, origin_.via}, done);
  } else {
    ctx_.link.Call(wire::CloseStdinRequest{info_.id, principal_, origin_.client, origin_.via},
                   done);
  }
}

// Stdin goes in chunks of at most one frame's data, one at a time: the next message is read
// only when the supervisor has taken this one, which is this client's backpressure.
void WsSession::SendStdin(std::string data, size_t from) {
  if (from >= data.size()) {
    if (!closing_) DoRead();
    return;
  }
  if (auto ended = TokenEnded()) {  // a long message's later chunks: the token may have ended
    EndForToken(*ended);
    return;
  }
  const size_t n = std::min(wire::kMaxChunkBytes, data.size() - from);
  wire::StdinRequest request{info_.id,
                             std::vector<uint8_t>(data.begin() + static_cast<long>(from),
                                                  data.begin() + static_cast<long>(from + n)),
                             principal_, origin_.client, origin_.via};
  ctx_.link.Call(std::move(request), [self = shared_from_this(), data = std::move(data), from,
                                      n](Result<wire::Response> r) mutable {
    if (r && !r->ok() && !self->closing_ &&
        std::get<wire::ErrorBody>(r->body).code == wire::ErrorCode::kCapacity) {
      // The session's stdin buffer is full (the command reads slower than the client writes):
      // keep holding the client back and offer the same chunk again shortly, rather than
      // dropping it. The session's end turns this into wrong_state, which is reported.
      auto timer =
          std::make_shared<boost::asio::steady_timer>(self->ctx_.io, std::chrono::milliseconds(50));
      timer->async_wait(
          [self, timer, data = std::move(data), from](boost::system::error_code) mutable {
            if (!self->closing_) self->SendStdin(std::move(data), from);
          });
      return;
    }
    if (!r || !r->ok()) {
      self->AfterClientCall(std::move(r));
      return;
    }
    self->SendStdin(std::move(data), from + n);
  });
}

void WsSession::AfterClientCall(Result<wire::Response> r) {
  if (!r) {
    Enqueue(WsErrorJson(TransportError(r.error())));
  } else if (!r->ok()) {
    Enqueue(WsErrorJson(FromSupervisor(std::get<wire::ErrorBody>(r->body))));
  }
  if (!closing_) DoRead();
}

std::optional<std::string> WsSession::TokenEnded() const {
  if (token_id_.empty()) return std::nullopt;
  const uint64_t now = WallClockMs();
  switch (ctx_.token_store.Lookup(token_id_, now)) {
    case TokenVerdict::kValid:
      return std::nullopt;
    case TokenVerdict::kRevoked:
      return "token revoked";
    case TokenVerdict::kExpired:
    case TokenVerdict::kNotScoped:
    case TokenVerdict::kUnknown:  // forgotten, which the store does only after the expiry
      break;
  }
  return "token expired";
}

void WsSession::ArmExpiry(uint64_t expires_at_ms) {
  if (!expiry_timer_) expiry_timer_ = std::make_unique<boost::asio::steady_timer>(ctx_.io);
  const uint64_t now = WallClockMs();
  // One millisecond past the expiry, on the steady clock: the wall clock may step meanwhile,
  // so the handler asks the store again and re-arms while the token still holds.
  expiry_timer_->expires_after(
      std::chrono::milliseconds(expires_at_ms > now ? expires_at_ms - now + 1 : 1));
  // A weak reference: the timer does not keep a WebSocket the client has left alive.
  expiry_timer_->async_wait([weak = weak_from_this(), expires_at_ms](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->closing_) return;
    if (auto ended = self->TokenEnded()) {
      self->EndForToken(*ended);
    } else {
      self->ArmExpiry(expires_at_ms);
    }
  });
}

void WsSession::EndForToken(std::string_view reason) {
  if (closing_) return;
  if (expiry_timer_) expiry_timer_->cancel();
  LeaveLive(Mode::kDone);
  RestartReads();  // answers to reads in flight are dropped
  // Output queued but not yet being written is not sent: it would go out after the token
  // ended.
  while (outbox_.size() > (writing_ ? 1u : 0u)) {
    outbox_bytes_ -= outbox_.back().size();
    outbox_.pop_back();
  }
  close_reason_ = websocket::close_reason(websocket::close_code::policy_error,
                                          beast::string_view(reason.data(), reason.size()));
  Enqueue(WsErrorJson(ApiError{401, "unauthorized", std::string(reason), {}}));
  closing_ = true;  // OnWrite closes once the error is written
  if (!writing_) Close();
}

}  // namespace mp::http

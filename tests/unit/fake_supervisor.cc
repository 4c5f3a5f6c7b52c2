#include "fake_supervisor.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>
#include <variant>

#include "common/wire.h"

namespace mp::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kVersion = "fake-0.0.1";
// Frames one connection may queue before its subscriptions pause (the real supervisor's rule,
// docs/protocol.md "Flow control").
constexpr size_t kSoftLimit = wire::kOutboxSoftLimitBytes;
// Requests handled per connection per wake-up, so one busy client cannot starve the rest.
constexpr int kFramesPerWakeup = 64;
// Room kept for the JSON of a read_output answer per chunk entry, and for the rest of it.
constexpr size_t kJsonPerChunk = 64;
constexpr size_t kJsonBase = 256;

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

wire::ErrorBody Err(wire::ErrorCode code, std::string message, std::string field = {}) {
  return wire::ErrorBody{code, std::move(message), std::move(field)};
}

std::optional<wire::ErrorCode> ErrorCodeNamed(std::string_view name) {
  for (size_t i = 0; i < kErrorCodeNames.size(); ++i) {
    const auto code = static_cast<wire::ErrorCode>(i);
    if (wire::ToString(code) == name) return code;
  }
  return std::nullopt;
}

std::optional<uint64_t> Number(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t at = s.find(sep, start);
    out.push_back(
        s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

// What version 1's decoder answered to a request that today's decoded: {field, message} of its
// first refusal, or nothing. Written out from version 1's tables (docs/protocol.md before
// version 2), not taken from common/proto_version.h, which is under test.
std::optional<std::pair<std::string, std::string>> Version1Refusal(const wire::RequestBody& body) {
  auto unknown = [](std::string_view key) {
    return std::pair{"/" + std::string(key), "/" + std::string(key) + ": unknown field"};
  };
  return std::visit(
      [&]([[maybe_unused]] const auto& r) -> std::optional<std::pair<std::string, std::string>> {
        using R = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<R, wire::KillRequest> ||
                      std::is_same_v<R, wire::SignalRequest> ||
                      std::is_same_v<R, wire::StdinRequest> ||
                      std::is_same_v<R, wire::CloseStdinRequest> ||
                      std::is_same_v<R, wire::ResizeRequest>) {
          if (!r.client.empty()) return unknown("client");
          if (!r.via.empty()) return unknown("via");
        } else if constexpr (std::is_same_v<R, wire::SpawnRequest>) {
          if (!r.via.empty()) return unknown("via");
        } else if constexpr (std::is_same_v<R, wire::AuditRequest>) {
          if (r.action != wire::AuditAction::kTokenCreate &&
              r.action != wire::AuditAction::kTokenRevoke) {
            return std::pair{std::string("/action"),
                             std::string(R"(/action: expected one of "token_create", )"
                                         R"("token_revoke")")};
          }
          if (!r.via.empty()) return unknown("via");
        }
        return std::nullopt;
      },
      body);
}

}  // namespace

FakeSupervisor::FakeSupervisor() : started_(Clock::now()) {
  char tmpl[] = "/tmp/mp-fake-supervisor-XXXXXX";
  if (::mkdtemp(tmpl) != nullptr) dir_ = tmpl;
  socket_path_ = dir_ + "/control.sock";
}

FakeSupervisor::~FakeSupervisor() {
  Stop();
  if (!dir_.empty()) ::rmdir(dir_.c_str());
}

std::string FakeSupervisor::Pattern(uint64_t offset, size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    const uint64_t at = offset + i;
    out[i] = at % 64 == 63 ? '\n' : static_cast<char>('A' + (at / 64 * 7 + at) % 26);
  }
  return out;
}

Result<void> FakeSupervisor::Start() {
  if (dir_.empty()) return PlainError("mkdtemp failed");
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return PlainError("already running");
  listen_fd_.Reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_fd_) return ErrnoError("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof addr.sun_path) return PlainError("socket path too long");
  std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  ::unlink(socket_path_.c_str());
  if (::bind(listen_fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoError("bind " + socket_path_);
  }
  if (::listen(listen_fd_.get(), 16) != 0) return ErrnoError("listen");
  wake_fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_fd_) return ErrnoError("eventfd");
  ++boots_;
  boot_id_ = "fake-boot-" + std::to_string(boots_);
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
  return {};
}

void FakeSupervisor::Stop() {
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable()) return;
    stop_ = true;
  }
  Wake();
  thread_.join();
  std::lock_guard lock(mu_);
  conns_.clear();
  listen_fd_.Reset();
  wake_fd_.Reset();
  ::unlink(socket_path_.c_str());
}

bool FakeSupervisor::running() const {
  std::lock_guard lock(mu_);
  return thread_.joinable() && !stop_;
}

void FakeSupervisor::Wake() const {
  const uint64_t one = 1;
  if (wake_fd_ && ::write(wake_fd_.get(), &one, sizeof one) < 0) {
    // EAGAIN: the counter is already non-zero, so the loop wakes anyway.
  }
}

void FakeSupervisor::Loop() {
  bool emitting = false;
  for (;;) {
    std::vector<pollfd> fds;
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      fds.push_back({wake_fd_.get(), POLLIN, 0});
      fds.push_back({listen_fd_.get(), POLLIN, 0});
      for (const auto& c : conns_) {
        const short events = static_cast<short>(POLLIN | (c->outbox.empty() ? 0 : POLLOUT));
        fds.push_back({c->fd.get(), events, 0});
      }
    }
    const int rc = ::poll(fds.data(), fds.size(), emitting ? 1 : 50);
    if (rc < 0 && errno != EINTR) return;
    std::lock_guard lock(mu_);
    if (stop_) return;
    if ((fds[0].revents & POLLIN) != 0) {
      uint64_t n = 0;
      if (::read(wake_fd_.get(), &n, sizeof n) < 0) n = 0;
    }
    if ((fds[1].revents & POLLIN) != 0) AcceptAll();
    // Connections accepted just now are not in `fds`; they are polled next round.
    for (size_t i = 2; i < fds.size() && i - 2 < conns_.size(); ++i) {
      Connection& c = *conns_[i - 2];
      if ((fds[i].revents & POLLOUT) != 0) Flush(c);
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) ReadFrom(c);
    }
    emitting = Tick();
    PumpAll();
    std::erase_if(conns_, [](const std::unique_ptr<Connection>& c) { return c->broken; });
  }
}

void FakeSupervisor::AcceptAll() {
  for (;;) {
    const int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    auto c = std::make_unique<Connection>();
    c->fd.Reset(fd);
    conns_.push_back(std::move(c));
  }
}

void FakeSupervisor::ReadFrom(Connection& c) {
  std::vector<uint8_t> buffer(wire::kMaxFrameBytes);
  for (int i = 0; i < kFramesPerWakeup && !c.broken; ++i) {
    auto got = wire::ReceiveFrame(c.fd.get(), buffer, c.parts);
    if (!got || got->status == wire::ReceiveStatus::kClosed) {
      c.broken = true;
      return;
    }
    if (got->status == wire::ReceiveStatus::kWouldBlock) return;
    if (got->status == wire::ReceiveStatus::kPart) continue;
    wire::DecodeDetail detail;
    auto request = wire::DecodeRequest(got->frame, &detail);
    if (request && c.hello && c.proto == 1) {
      // What version 1's strict decoder refused, before anything is recorded.
      if (auto refusal = Version1Refusal(request->body)) {
        auto frame = wire::EncodeResponse(wire::Response{
            request->id, Err(wire::ErrorCode::kBadRequest, refusal->second, refusal->first)});
        if (frame) Send(c, std::move(*frame));
        continue;
      }
    }
    if (request && c.hello) last_envelope_[request->type()] = std::string(got->frame.json);
    if (request && c.hello && c.proto < 4) {
      // Versions before 4 have no cwd_within: their strict decoder calls it unknown (the
      // envelope is kept above, so that a test sees it was sent).
      if (const auto* spawn = std::get_if<wire::SpawnRequest>(&request->body);
          spawn != nullptr && !spawn->cwd_within.empty()) {
        auto frame = wire::EncodeResponse(wire::Response{
            request->id,
            Err(wire::ErrorCode::kBadRequest, "/cwd_within: unknown field", "/cwd_within")});
        if (frame) Send(c, std::move(*frame));
        continue;
      }
    }
    if (!request) {
      if (!c.hello || !detail.id) {
        c.broken = true;
        return;
      }
      auto frame = wire::EncodeResponse(wire::Response{
          *detail.id, Err(wire::ErrorCode::kBadRequest, request.error().what, detail.field)});
      if (frame) Send(c, std::move(*frame));
      continue;
    }
    HandleRequest(c, *request);
  }
}

void FakeSupervisor::HandleRequest(Connection& c, const wire::Request& request) {
  if (!c.hello) {
    if (request.type() != wire::RequestType::kHello) {
      c.broken = true;
      return;
    }
    const uint32_t offered = std::get<wire::HelloRequest>(request.body).proto;
    if (offered < wire::kMinProtoVersion || offered > newest_proto_) {
      // As monkeyproofd: our hello (the newest we speak), the error, the close.
      ++refused_hellos_;
      SendEvent(c, wire::ServerHello{newest_proto_, std::string(kVersion), boot_id_});
      auto frame = wire::EncodeResponse(wire::Response{
          0, Err(wire::ErrorCode::kBadRequest,
                 "protocol version " + std::to_string(offered) + " is not supported", "/proto")});
      if (frame) Send(c, std::move(*frame));
      c.broken = true;
      return;
    }
    c.hello = true;
    c.proto = offered;
    last_proto_ = offered;
    ++requests_by_type_[wire::RequestType::kHello];  // hellos count only here, not in requests()
    SendEvent(c, wire::ServerHello{offered, std::string(kVersion), boot_id_});
    return;
  }
  if (request.type() == wire::RequestType::kHello) {
    c.broken = true;  // a second hello is a protocol error
    return;
  }
  ++requests_;
  ++requests_by_type_[request.type()];
  std::visit(
      [&](const auto& r) {
        if constexpr (requires { r.principal; }) last_principal_[request.type()] = r.principal;
        if constexpr (requires { r.via; }) {
          last_client_[request.type()] = r.client;
          last_via_[request.type()] = r.via;
        }
      },
      request.body);
  wire::Response response{request.id, Dispatch(c, request.body)};
  if (std::exchange(no_answer_, false)) return;
  auto frame = wire::EncodeResponse(response);
  if (!frame) {
    std::fprintf(stderr, "fake supervisor: encode response: %s\n",
                 frame.error().ToString().c_str());
    c.broken = true;
    return;
  }
  Send(c, std::move(*frame));
  // A subscription's first events follow its response.
  if (const auto* sub = std::get_if<wire::SubscribeRequest>(&request.body); sub && response.ok()) {
    auto it = c.subs.find(sub->session);
    if (it != c.subs.end()) Pump(c, it->first, it->second);
  }
}

wire::ResponseBody FakeSupervisor::Dispatch(Connection& c, const wire::RequestBody& body) {
  using wire::ErrorCode;
  auto not_found = [](const std::string& id) {
    return Err(ErrorCode::kNotFound, "no session " + id, "/session");
  };
  if (const auto* r = std::get_if<wire::SpawnRequest>(&body)) {
    last_spawn_task_ = r->task;
    last_spawn_client_ = r->client;
    last_spawn_cwd_within_ = r->cwd_within;
    if (r->task.starts_with("fail:")) {
      std::string_view rest = std::string_view(r->task).substr(5);
      std::string field = "/task";
      if (const size_t colon = rest.find(':'); colon != std::string_view::npos) {
        field = std::string(rest.substr(colon + 1));
        rest = rest.substr(0, colon);
      }
      const auto code = ErrorCodeNamed(rest);
      return Err(code.value_or(ErrorCode::kInternal), "fake: refused by request", field);
    }
    if (r->task == "hang") {
      no_answer_ = true;
      return std::monostate{};
    }
    if (ActiveLocked() >= max_sessions_) {
      return Err(ErrorCode::kCapacity,
                 "at capacity: " + std::to_string(max_sessions_) + " sessions running");
    }
    if (r->preset && *r->preset != "claude" && *r->preset != "codex") {
      return Err(ErrorCode::kNotFound, "no policy " + *r->preset, "/preset");
    }
    auto s = std::make_unique<Session>();
    const uint64_t n = next_session_++;
    wire::SessionInfo& info = s->info;
    info.id = "s-" + std::to_string(n);
    info.state = wire::SessionState::kRunning;
    info.type = r->type;
    info.preset = r->preset;
    info.task_preview = r->task.substr(0, wire::kMaxTaskPreviewBytes);
    // As monkeyproofd: a create without cwd runs in the first of its token's workspaces.
    info.cwd = r->cwd.value_or(r->cwd_within.empty() ? "/srv/monkeyproof/workspaces/fake"
                                                     : r->cwd_within.front());
    info.command =
        (r->command ? *r->command : std::string("/bin/sh -lc")) + " " + r->task.substr(0, 256);
    info.pid = static_cast<uint32_t>(1000 + n);
    info.created_at_ms = NowMs();
    info.owner = r->owner;
    info.labels = r->labels;
    info.created_by = r->principal;
    if (r->type == wire::SessionType::kInteractive) info.pty = r->pty.value_or(wire::PtySize{});
    const auto words = Split(r->task, ':');
    if (words[0] == "echo") s->echo = true;
    if (words[0] == "ignoreterm") s->ignore_kill = true;
    if (words[0] == "emit" && words.size() > 1) {
      s->emit_left = Number(words[1]).value_or(0);
      for (size_t i = 2; i < words.size(); ++i) {
        if (words[i] == "hold") s->emit_hold = true;
        if (words[i].starts_with("chunk=")) {
          s->emit_chunk = std::max<uint64_t>(1, Number(words[i].substr(6)).value_or(16384));
        }
        if (words[i].starts_with("every=")) {
          s->emit_every = std::chrono::milliseconds(Number(words[i].substr(6)).value_or(1));
        }
      }
      s->emit_chunk = std::min<uint64_t>(s->emit_chunk, wire::kMaxChunkBytes);
      s->next_emit = Clock::now();
    }
    wire::SessionInfo copy = info;
    order_.push_back(info.id);
    sessions_.emplace(info.id, std::move(s));
    return copy;
  }
  if (const auto* r = std::get_if<wire::ListRequest>(&body)) {
    wire::SessionList list;
    const size_t limit = std::min<size_t>(r->limit.value_or(wire::kMaxListLimit), list_page_);
    bool past_after = !r->after.has_value();
    for (const auto& id : order_) {
      if (!past_after) {
        past_after = id == *r->after;
        continue;
      }
      const Session& s = *sessions_.at(id);
      if (r->owner && s.info.owner != *r->owner) continue;
      if (r->label &&
          std::find(s.info.labels.begin(), s.info.labels.end(), *r->label) == s.info.labels.end()) {
        continue;
      }
      if (r->state && s.info.state != *r->state) continue;
      if (list.sessions.size() == limit) {
        list.more = true;
        break;
      }
      list.sessions.push_back(s.info);
    }
    return list;
  }
  if (const auto* r = std::get_if<wire::GetRequest>(&body)) {
    const Session* s = Find(r->session);
    if (s == nullptr) return not_found(r->session);
    return s->info;
  }
  if (const auto* r = std::get_if<wire::KillRequest>(&body)) {
    Session* s = Find(r->session);
    if (s == nullptr) return not_found(r->session);
    if (!s->info.end && !s->ignore_kill) {
      wire::EndRecord end;
      end.reason = wire::EndReason::kKilledByRequest;
      end.signal = 9;
      EndLocked(*s, end);
    }
    return s->info;
  }
  if (const auto* r = std::get_if<wire::SignalRequest>(&body)) {
    Session* s = Find(r->session);
    if (s == nullptr) return not_found(r->session);
    if (s->info.end) return Err(ErrorCode::kWrongState, "session has ended");
    s->signals.push_back(r->signal);
    return std::monostate{};
  }
  if (const auto* r = std::get_if<wire::StdinRequest>(&body)) {
    Session* s = Find(r->session);
    if (s == nullptr) return not_found(r->session);
    if (s->info.end) return Err(ErrorCode::kWrongState, "session " + s->info.id + " has ended");
    const std::string_view data(reinterpret_cast<const char*>(r->data.data()), r->data.size());
    s->stdin_bytes.append(data);
    if (s->echo && !data.empty()) AppendLocked(*s, wire::OutputStream::kStdout, data);
    return std::monostate{};
  }
  if (const auto* r = std::get_if<wire::CloseStdinRequest>(&body)) {
    Session* s = Find(r->session);
    if (s == nullptr) return not_found(r->session);
    if (s->info.end) return Err(ErrorCode::kWrongState, "session has ended");
    if (s->emit_left == 0) {
      wire::EndRecord end;
      end.exit_code = 0;
      EndLocked(*s, end);
    }
    return std::monostate{};
  }
  if (const auto* r = std::get_if<wire::ResizeRequest>(&body)) {
    Session* s = Find(r->session);
    if (s == nullptr) return not_found(r->session);
    if (!s->info.pty || s->info.end) return Err(ErrorCode::kWrongState, "no terminal to resize");
    s->info.pty = r->size;
    return std::monostate{};
  }
  if (const auto* r = std::get_if<wire::SubscribeRequest>(&body)) {
    Session* s = Find(r->session);
    if (s == nullptr) return not_found(r->session);
    if (r->since && *r->since > s->bytes.size()) {
      return Err(ErrorCode::kBadRequest, "since is past the end of the output", "/since");
    }
    c.subs[r->session] = Subscription{r->since.value_or(s->bytes.size()), false};
    return s->info;
  }
  if (const auto* r = std::get_if<wire::UnsubscribeRequest>(&body)) {
    if (Find(r->session) == nullptr) return not_found(r->session);
    c.subs.erase(r->session);
    return std::monostate{};
  }
  if (const auto* r = std::get_if<wire::ReadOutputRequest>(&body)) {
    const Session* s = Find(r->session);
    if (s == nullptr) return not_found(r->session);
    if (r->since > s->bytes.size()) {
      return Err(ErrorCode::kBadRequest,
                 "since " + std::to_string(r->since) + " is past the end of the output (" +
                     std::to_string(s->bytes.size()) + " bytes)",
                 "/since");
    }
    return ReadLocked(*s, r->since, r->limit);
  }
  if (const auto* r = std::get_if<wire::PoliciesRequest>(&body)) {
    return wire::PolicyPage(policies_, r->after);
  }
  if (const auto* r = std::get_if<wire::AuditRequest>(&body)) {
    audits_.push_back(*r);
    return std::monostate{};
  }
  if (std::holds_alternative<wire::HealthRequest>(body)) {
    wire::HealthInfo h;
    h.version = std::string(kVersion);
    h.uptime_seconds = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started_).count());
    h.sessions_active = ActiveLocked();
    h.sessions_total = static_cast<uint32_t>(sessions_.size());
    h.max_sessions = max_sessions_;
    h.ready = ready_ && h.sessions_active < max_sessions_;
    if (!h.ready) h.reason = ready_ ? "at capacity" : "not ready (test)";
    return h;
  }
  return Err(ErrorCode::kInternal, "fake: unhandled request");
}

wire::OutputRead FakeSupervisor::ReadLocked(const Session& s, uint64_t since,
                                            uint64_t limit) const {
  wire::OutputRead out;
  out.total = s.bytes.size();
  out.ended = s.info.end.has_value();
  uint64_t pos = since;
  if (pos < s.held_from) {
    out.gaps.push_back({pos, s.held_from});
    pos = s.held_from;
  }
  // The chunk holding `pos`: the last one starting at or before it.
  auto it = std::upper_bound(s.chunks.begin(), s.chunks.end(), pos,
                             [](uint64_t p, const Chunk& c) { return p < c.offset; });
  if (it != s.chunks.begin()) --it;
  while (it != s.chunks.end() && pos < out.total && out.chunks.size() < wire::kMaxReadChunks) {
    const uint64_t chunk_end = it->offset + it->length;
    if (chunk_end <= pos) {
      ++it;
      continue;
    }
    const uint64_t room_json = kJsonBase + kJsonPerChunk * (out.chunks.size() + 1);
    if (out.data.size() + room_json >= wire::kMaxFrameBodyBytes) break;
    const uint64_t room = std::min<uint64_t>(
        limit - out.data.size(), wire::kMaxFrameBodyBytes - room_json - out.data.size());
    const uint64_t n = std::min(chunk_end - pos, room);
    if (n == 0) break;
    out.chunks.push_back({it->stream, pos, static_cast<uint32_t>(n)});
    out.data.insert(out.data.end(), s.bytes.begin() + static_cast<ptrdiff_t>(pos),
                    s.bytes.begin() + static_cast<ptrdiff_t>(pos + n));
    pos += n;
    if (out.data.size() >= limit) break;
  }
  out.next = pos;
  return out;
}

void FakeSupervisor::Send(Connection& c, std::vector<uint8_t> frame) {
  if (c.broken) return;
  if (c.outbox.empty()) {
    auto sent = wire::SendFrame(c.fd.get(), frame);
    if (!sent) {
      c.broken = true;
      return;
    }
    if (*sent == wire::SendStatus::kSent) return;
  }
  c.outbox_bytes += frame.size();
  c.outbox.push_back(std::move(frame));
}

void FakeSupervisor::SendEvent(Connection& c, const wire::Event& event) {
  auto frame = wire::EncodeEvent(event);
  if (!frame) {
    std::fprintf(stderr, "fake supervisor: encode event: %s\n", frame.error().ToString().c_str());
    c.broken = true;
    return;
  }
  Send(c, std::move(*frame));
}

void FakeSupervisor::Flush(Connection& c) {
  while (!c.outbox.empty() && !c.broken) {
    auto sent = wire::SendFrame(c.fd.get(), c.outbox.front());
    if (!sent) {
      c.broken = true;
      return;
    }
    if (*sent == wire::SendStatus::kWouldBlock) return;
    c.outbox_bytes -= c.outbox.front().size();
    c.outbox.pop_front();
  }
}

bool FakeSupervisor::CanSend(const Connection& c) const {
  return !c.broken && c.outbox_bytes < kSoftLimit;
}

void FakeSupervisor::Pump(Connection& c, const std::string& id, Subscription& sub) {
  const Session* s = Find(id);
  if (s == nullptr) return;
  const uint64_t total = s->bytes.size();
  while (sub.next < total && CanSend(c)) {
    const wire::OutputRead read = ReadLocked(*s, sub.next, wire::kMaxChunkBytes);
    for (const auto& gap : read.gaps) SendEvent(c, wire::GapEvent{id, gap});
    size_t pos = 0;
    for (const auto& chunk : read.chunks) {
      wire::OutputEvent ev;
      ev.session = id;
      ev.stream = chunk.stream;
      ev.offset = chunk.offset;
      ev.data.assign(read.data.begin() + static_cast<ptrdiff_t>(pos),
                     read.data.begin() + static_cast<ptrdiff_t>(pos + chunk.length));
      pos += chunk.length;
      SendEvent(c, ev);
    }
    if (read.next <= sub.next) break;
    sub.next = read.next;
  }
  if (s->info.end && !sub.exit_sent && sub.next >= total && CanSend(c)) {
    SendEvent(c, wire::ExitEvent{id, *s->info.end});
    sub.exit_sent = true;
  }
}

void FakeSupervisor::PumpAll() {
  for (auto& c : conns_) {
    if (!c->hello) continue;
    for (auto& [id, sub] : c->subs) Pump(*c, id, sub);
  }
}

bool FakeSupervisor::Tick() {
  bool any = false;
  const auto now = Clock::now();
  for (auto& [id, s] : sessions_) {
    if (s->emit_left == 0 || s->info.end) continue;
    if (now >= s->next_emit) {
      const uint64_t n = std::min(s->emit_left, s->emit_chunk);
      AppendLocked(*s, wire::OutputStream::kStdout, Pattern(s->bytes.size(), n));
      s->emit_left -= n;
      s->next_emit = now + s->emit_every;
      if (s->emit_left == 0 && !s->emit_hold) {
        wire::EndRecord end;
        end.exit_code = 0;
        EndLocked(*s, end);
      }
    }
    any = any || s->emit_left > 0;
  }
  return any;
}

void FakeSupervisor::AppendLocked(Session& s, wire::OutputStream stream, std::string_view bytes) {
  // Chunks hold at most one event's worth, so that an event never crosses an Append.
  for (size_t pos = 0; pos < bytes.size(); pos += wire::kMaxChunkBytes) {
    const size_t n = std::min(wire::kMaxChunkBytes, bytes.size() - pos);
    s.chunks.push_back({stream, s.bytes.size(), n});
    s.bytes.append(bytes.substr(pos, n));
  }
  s.info.output_bytes = s.bytes.size();
  s.info.output_lines += static_cast<uint64_t>(std::count(bytes.begin(), bytes.end(), '\n'));
}

void FakeSupervisor::EndLocked(Session& s, wire::EndRecord end) {
  end.ended_at_ms = std::max(NowMs(), s.info.created_at_ms);
  end.cpu_usage_usec = 1234;
  s.info.state = end.exit_code ? wire::SessionState::kExited : wire::SessionState::kKilled;
  s.info.end = std::move(end);
  s.emit_left = 0;
}

FakeSupervisor::Session* FakeSupervisor::Find(const std::string& id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

const FakeSupervisor::Session* FakeSupervisor::Find(const std::string& id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

uint32_t FakeSupervisor::ActiveLocked() const {
  uint32_t n = 0;
  for (const auto& [id, s] : sessions_) n += s->info.end ? 0 : 1;
  return n;
}

// ---- Test control.

void FakeSupervisor::Append(const std::string& session, wire::OutputStream stream,
                            const std::string& bytes) {
  {
    std::lock_guard lock(mu_);
    if (Session* s = Find(session)) AppendLocked(*s, stream, bytes);
  }
  Wake();
}

void FakeSupervisor::StartEmit(const std::string& session, uint64_t n, uint64_t chunk) {
  {
    std::lock_guard lock(mu_);
    Session* s = Find(session);
    if (s == nullptr || s->info.end) return;
    s->emit_left = n;
    s->emit_chunk = std::clamp<uint64_t>(chunk, 1, wire::kMaxChunkBytes);
    s->emit_every = std::chrono::milliseconds(1);
    s->emit_hold = false;
    s->next_emit = Clock::now();
  }
  Wake();
}

void FakeSupervisor::AppendDropped(const std::string& session, const std::string& bytes) {
  {
    std::lock_guard lock(mu_);
    Session* s = Find(session);
    if (s == nullptr) return;
    const uint64_t from = s->bytes.size();
    for (auto& c : conns_) {  // what came before goes out first
      auto it = c->subs.find(session);
      if (it != c->subs.end()) Pump(*c, session, it->second);
    }
    AppendLocked(*s, wire::OutputStream::kStdout, bytes);
    for (auto& c : conns_) {
      auto it = c->subs.find(session);
      if (it == c->subs.end() || it->second.next != from) continue;
      it->second.next = s->bytes.size();
      SendEvent(*c, wire::LaggedEvent{session, from});
    }
  }
  Wake();
}

void FakeSupervisor::End(const std::string& session, int32_t exit_code,
                         std::optional<int32_t> signal) {
  {
    std::lock_guard lock(mu_);
    Session* s = Find(session);
    if (s == nullptr || s->info.end) return;
    wire::EndRecord end;
    if (signal) {
      end.reason = wire::EndReason::kKilledByRequest;
      end.signal = signal;
    } else {
      end.exit_code = exit_code;
    }
    EndLocked(*s, end);
  }
  Wake();
}

void FakeSupervisor::DropBefore(const std::string& session, uint64_t offset) {
  {
    std::lock_guard lock(mu_);
    if (Session* s = Find(session)) s->held_from = std::min<uint64_t>(offset, s->bytes.size());
  }
  Wake();
}

void FakeSupervisor::SetReady(bool ready) {
  std::lock_guard lock(mu_);
  ready_ = ready;
}

void FakeSupervisor::SetProto(uint32_t newest) {
  std::lock_guard lock(mu_);
  newest_proto_ = newest;
}

std::string FakeSupervisor::last_envelope(wire::RequestType type) const {
  std::lock_guard lock(mu_);
  auto it = last_envelope_.find(type);
  return it == last_envelope_.end() ? std::string() : it->second;
}

uint32_t FakeSupervisor::last_proto() const {
  std::lock_guard lock(mu_);
  return last_proto_;
}

uint64_t FakeSupervisor::refused_hellos() const {
  std::lock_guard lock(mu_);
  return refused_hellos_;
}

void FakeSupervisor::SetMaxSessions(uint32_t max_sessions) {
  std::lock_guard lock(mu_);
  max_sessions_ = max_sessions;
}

void FakeSupervisor::SetListPageSize(size_t n) {
  std::lock_guard lock(mu_);
  list_page_ = std::max<size_t>(1, n);
}

void FakeSupervisor::SetPolicies(std::vector<wire::PolicyInfo> policies) {
  std::sort(policies.begin(), policies.end(),
            [](const wire::PolicyInfo& a, const wire::PolicyInfo& b) { return a.name < b.name; });
  std::lock_guard lock(mu_);
  policies_ = std::move(policies);
}

std::vector<wire::PolicyInfo> FakeSupervisor::DefaultPolicies() {
  wire::PolicyInfo claude{"claude", wire::SessionType::kPrint, "an agent", true};
  claude.memory_max_bytes = uint64_t{4} << 30;
  claude.pids_max = 2048;
  claude.cpu_max_percent = 200;
  claude.wall_seconds = 14400;
  claude.network = wire::NetworkMode::kHost;
  wire::PolicyInfo codex{"codex", wire::SessionType::kInteractive, "", false};
  codex.memory_max_bytes = uint64_t{2} << 30;
  codex.pids_max = 512;
  codex.wall_seconds = 3600;
  codex.idle_seconds = 900;
  wire::PolicyInfo exec{"exec", wire::SessionType::kExec, "commands in a sandbox", false};
  exec.memory_max_bytes = uint64_t{2} << 30;
  exec.pids_max = 512;
  exec.cpu_max_percent = 200;
  exec.wall_seconds = 3600;
  exec.idle_seconds = 900;
  return {claude, codex, exec};
}

// ---- Inspection.

std::string FakeSupervisor::Output(const std::string& session) const {
  std::lock_guard lock(mu_);
  const Session* s = Find(session);
  return s == nullptr ? std::string() : s->bytes;
}

uint64_t FakeSupervisor::OutputBytes(const std::string& session) const {
  std::lock_guard lock(mu_);
  const Session* s = Find(session);
  return s == nullptr ? 0 : s->bytes.size();
}

std::string FakeSupervisor::StdinOf(const std::string& session) const {
  std::lock_guard lock(mu_);
  const Session* s = Find(session);
  return s == nullptr ? std::string() : s->stdin_bytes;
}

std::vector<int32_t> FakeSupervisor::SignalsOf(const std::string& session) const {
  std::lock_guard lock(mu_);
  const Session* s = Find(session);
  return s == nullptr ? std::vector<int32_t>() : s->signals;
}

std::optional<wire::SessionInfo> FakeSupervisor::Info(const std::string& session) const {
  std::lock_guard lock(mu_);
  const Session* s = Find(session);
  if (s == nullptr) return std::nullopt;
  return s->info;
}

uint64_t FakeSupervisor::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

uint64_t FakeSupervisor::requests(wire::RequestType type) const {
  std::lock_guard lock(mu_);
  auto it = requests_by_type_.find(type);
  return it == requests_by_type_.end() ? 0 : it->second;
}

std::string FakeSupervisor::last_spawn_task() const {
  std::lock_guard lock(mu_);
  return last_spawn_task_;
}

std::string FakeSupervisor::last_spawn_client() const {
  std::lock_guard lock(mu_);
  return last_spawn_client_;
}

std::vector<std::string> FakeSupervisor::last_spawn_cwd_within() const {
  std::lock_guard lock(mu_);
  return last_spawn_cwd_within_;
}

std::string FakeSupervisor::last_principal(wire::RequestType type) const {
  std::lock_guard lock(mu_);
  auto it = last_principal_.find(type);
  return it == last_principal_.end() ? std::string() : it->second;
}

std::string FakeSupervisor::last_client(wire::RequestType type) const {
  std::lock_guard lock(mu_);
  auto it = last_client_.find(type);
  return it == last_client_.end() ? std::string() : it->second;
}

std::string FakeSupervisor::last_via(wire::RequestType type) const {
  std::lock_guard lock(mu_);
  auto it = last_via_.find(type);
  return it == last_via_.end() ? std::string() : it->second;
}

std::vector<wire::AuditRequest> FakeSupervisor::audits() const {
  std::lock_guard lock(mu_);
  return audits_;
}

size_t FakeSupervisor::connections() const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(
      std::count_if(conns_.begin(), conns_.end(), [](const auto& c) { return c->hello; }));
}

bool FakeSupervisor::WaitUntil(const std::function<bool(const FakeSupervisor&)>& pred,
                               std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred(*this)) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace mp::testing

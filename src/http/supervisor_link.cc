#include "http/supervisor_link.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <boost/asio/post.hpp>

#include "common/log.h"
#include "common/proto_version.h"
#include "common/version.h"
#include "common/wire.h"

namespace mp::http {
namespace {

constexpr auto kMaxBackoff = std::chrono::milliseconds(2000);
constexpr auto kHandshakeTimeout = std::chrono::seconds(5);
// Requests queued behind a full socket before calls are refused: the supervisor reads its
// socket promptly, so reaching this means it is wedged.
constexpr size_t kMaxOutboxBytes = size_t{8} * 1024 * 1024;
// read_output answer bytes allowed in flight: with the supervisor's output events (pumped
// only below its 1 MiB soft limit) this keeps its outbox to us well under the 4 MiB hard limit.
constexpr size_t kMaxReadBytesInFlight = size_t{2} * 1024 * 1024;
// An answer's size beyond its data: envelope, chunk and gap lists.
constexpr size_t kReadAnswerOverhead = 4096;
// Frames handled per wake-up before yielding to other handlers (HTTP clients, timers, and
// above all WebSocket writes): 8 frames are at most 480 KiB of output, which a client that
// keeps up can take into its 1 MiB outbox without being counted as lagging.
constexpr int kFramesPerWakeup = 8;

}  // namespace

wire::ErrorBody Unavailable(const std::string& why) {
  return {wire::ErrorCode::kUnavailable, "supervisor unavailable: " + why, ""};
}

SupervisorLink::SupervisorLink(boost::asio::io_context& io, std::string socket_path,
                               std::string client_name)
    : io_(io),
      socket_path_(std::move(socket_path)),
      client_name_(std::move(client_name)),
      timer_(io),
      buffer_(wire::kMaxFrameBytes) {}

SupervisorLink::~SupervisorLink() { Stop(); }

void SupervisorLink::Start() {
  if (state_ != State::kStopped) return;
  state_ = State::kDown;
  Connect();
}

void SupervisorLink::Stop() {
  if (state_ == State::kStopped) return;
  Fail("stopping");
  state_ = State::kStopped;
  timer_.cancel();
}

void SupervisorLink::Connect() {
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    last_error_ = std::string("socket: ") + std::strerror(errno);
    ScheduleReconnect();
    return;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof addr.sun_path) {
    ::close(fd);
    last_error_ = "control socket path too long: " + socket_path_;
    ScheduleReconnect();
    return;
  }
  std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  // Unix-domain connect does not go in progress: it succeeds, or fails at once (EAGAIN when
  // the listen backlog is full, which is retried like any other failure).
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    last_error_ = "connect " + socket_path_ + ": " + std::strerror(err);
    ScheduleReconnect();
    return;
  }
  socket_.emplace(io_, fd);
  state_ = State::kHandshake;
  ++generation_;
  offered_ = fallback_.value_or(wire::kProtoVersion);
  fallback_.reset();
  wire::Request hello{0,
                      wire::HelloRequest{offered_, client_name_ + "/" + std::string(mp::kVersion)}};
  auto frame = wire::EncodeRequest(hello);
  if (!frame) {
    Fail("hello: " + frame.error().ToString());
    return;
  }
  SendBytes(std::move(*frame));
  timer_.expires_after(kHandshakeTimeout);
  timer_.async_wait([this, gen = generation_](boost::system::error_code ec) {
    if (ec || gen != generation_ || state_ != State::kHandshake) return;
    Fail("no hello from the supervisor within 5 s");
  });
  WaitReadable();
}

void SupervisorLink::ScheduleReconnect() {
  if (state_ == State::kStopped) return;
  timer_.expires_after(backoff_);
  backoff_ =
      std::min(backoff_ * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kMaxBackoff));
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || state_ != State::kDown) return;
    Connect();
  });
}

void SupervisorLink::Fail(const std::string& why) {
  const bool was_up = state_ == State::kUp;
  if (state_ == State::kStopped) return;
  last_error_ = why;
  if (was_up) common::Log(common::LogLevel::kWarning, "supervisor link lost: " + why);
  ++generation_;
  if (socket_) {
    boost::system::error_code ignored;
    socket_->close(ignored);
    socket_.reset();
  }
  outbox_.clear();
  outbox_bytes_ = 0;
  write_armed_ = false;
  state_ = State::kDown;
  // Pending callbacks learn it after this returns: a callback may well call Call() again.
  auto pending = std::exchange(pending_, {});
  for (auto& [id, done] : pending) {
    boost::asio::post(
        io_, [done = std::move(done), why] { done(PlainError("supervisor unavailable: " + why)); });
  }
  read_reserved_.clear();
  read_bytes_in_flight_ = 0;
  for (auto& [body, done] : std::exchange(deferred_reads_, {})) {
    boost::asio::post(
        io_, [done = std::move(done), why] { done(PlainError("supervisor unavailable: " + why)); });
  }
  if (was_up && listener_ != nullptr) listener_->OnLinkDown();
  ScheduleReconnect();
}

void SupervisorLink::Call(wire::RequestBody body, Callback done) {
  if (state_ != State::kUp) {
    boost::asio::post(io_, [done = std::move(done), why = last_error_] {
      done(PlainError("supervisor unavailable: " + why));
    });
    return;
  }
  // An older supervisor's decoder refuses what its version lacks: members that only enrich its
  // audit log are left out; a request its version has no form of is not sent (ApiAudit does
  // not ask for those; this is the backstop).
  if (!wire::FitToProto(body, proto_)) {
    boost::asio::post(io_, [done = std::move(done), proto = proto_] {
      done(PlainError("not sent: the supervisor speaks control protocol " + std::to_string(proto) +
                      ", which has no such request"));
    });
    return;
  }
  size_t read_bytes = 0;
  if (const auto* read = std::get_if<wire::ReadOutputRequest>(&body)) {
    read_bytes = read->limit + kReadAnswerOverhead;
    if (!deferred_reads_.empty() ||
        (read_bytes_in_flight_ > 0 && read_bytes_in_flight_ + read_bytes > kMaxReadBytesInFlight)) {
      deferred_reads_.emplace_back(std::move(body), std::move(done));
      return;
    }
  }
  const uint64_t id = next_id_++;
  auto frame = wire::EncodeRequest(wire::Request{id, std::move(body)});
  if (!frame) {
    boost::asio::post(io_, [done = std::move(done), e = frame.error()] { done(e); });
    return;
  }
  if (outbox_bytes_ + frame->size() > kMaxOutboxBytes) {
    boost::asio::post(io_, [done = std::move(done)] {
      done(PlainError("supervisor unavailable: its socket has not drained 8 MiB of requests"));
    });
    return;
  }
  pending_.emplace(id, std::move(done));
  if (read_bytes > 0) {
    read_reserved_.emplace(id, read_bytes);
    read_bytes_in_flight_ += read_bytes;
  }
  SendBytes(std::move(*frame));
}

void SupervisorLink::SendDeferredReads() {
  while (!deferred_reads_.empty() && state_ == State::kUp) {
    const auto& read = std::get<wire::ReadOutputRequest>(deferred_reads_.front().first);
    if (read_bytes_in_flight_ > 0 &&
        read_bytes_in_flight_ + read.limit + kReadAnswerOverhead > kMaxReadBytesInFlight) {
      return;
    }
    auto [body, done] = std::move(deferred_reads_.front());
    deferred_reads_.pop_front();
    // Call would queue it behind the others still waiting; this one is first in line.
    std::deque<std::pair<wire::RequestBody, Callback>> rest;
    rest.swap(deferred_reads_);
    Call(std::move(body), std::move(done));
    deferred_reads_.swap(rest);
  }
}

void SupervisorLink::SendBytes(std::vector<uint8_t> frame) {
  // A frame over one record goes as consecutive parts (wire.h); the outbox keeps them in order
  // and nothing else is queued between them.
  auto records = wire::SplitFrame(std::move(frame));
  if (!records) {
    Fail("send: " + records.error().ToString());
    return;
  }
  for (auto& record : *records) {
    outbox_bytes_ += record.size();
    outbox_.push_back(std::move(record));
  }
  FlushOutbox();
}

void SupervisorLink::FlushOutbox() {
  while (!outbox_.empty() && socket_) {
    auto sent = wire::SendFrame(socket_->native_handle(), outbox_.front());
    if (!sent) {
      Fail("send: " + sent.error().ToString());
      return;
    }
    if (*sent == wire::SendStatus::kWouldBlock) {
      if (write_armed_) return;
      write_armed_ = true;
      socket_->async_wait(boost::asio::posix::stream_descriptor::wait_write,
                          [this, gen = generation_](boost::system::error_code ec) {
                            if (ec || gen != generation_) return;
                            write_armed_ = false;
                            FlushOutbox();
                          });
      return;
    }
    outbox_bytes_ -= outbox_.front().size();
    outbox_.pop_front();
  }
}

void SupervisorLink::WaitReadable() {
  if (!socket_) return;
  socket_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                      [this, gen = generation_](boost::system::error_code ec) {
                        if (ec || gen != generation_) return;
                        OnReadable();
                      });
}

void SupervisorLink::OnReadable() {
  const uint64_t gen = generation_;
  for (int i = 0; i < kFramesPerWakeup; ++i) {
    if (!socket_ || gen != generation_) return;
    auto got = wire::ReceiveFrame(socket_->native_handle(), buffer_);
    if (!got) {
      Fail("receive: " + got.error().ToString());
      return;
    }
    if (got->status == wire::ReceiveStatus::kWouldBlock) {
      WaitReadable();
      return;
    }
    if (got->status == wire::ReceiveStatus::kClosed) {
      Fail(state_ == State::kHandshake
               ? "the supervisor closed the connection during the handshake (is this user "
                 "allowed? see api_user in monkeyproof.conf)"
               : "the supervisor closed the connection");
      return;
    }
    HandleFrame(got->frame);
  }
  // More may be waiting: come back after other handlers had their turn.
  boost::asio::post(io_, [this, gen] {
    if (gen == generation_) OnReadable();
  });
}

void SupervisorLink::HandleFrame(const wire::FrameView& frame) {
  auto message = wire::DecodeSupervisorMessage(frame);
  if (!message) {
    Fail("protocol error: " + message.error().ToString());
    return;
  }
  if (auto* response = std::get_if<wire::Response>(&*message)) {
    auto it = pending_.find(response->id);
    if (it == pending_.end()) {
      // Requests of an earlier connection were failed when it dropped and ids never repeat,
      // so an unknown id is the supervisor's bug: resynchronise by reconnecting.
      Fail("protocol error: response to unknown request " + std::to_string(response->id));
      return;
    }
    auto done = std::move(it->second);
    pending_.erase(it);
    if (auto r = read_reserved_.find(response->id); r != read_reserved_.end()) {
      read_bytes_in_flight_ -= r->second;
      read_reserved_.erase(r);
      SendDeferredReads();
    }
    done(std::move(*response));
    return;
  }
  auto& event = std::get<wire::Event>(*message);
  if (auto* hello = std::get_if<wire::ServerHello>(&event)) {
    if (state_ != State::kHandshake) {
      Fail("protocol error: hello after the handshake");
      return;
    }
    if (hello->proto != offered_) {
      // docs/protocol.md "Versions": a supervisor that does not speak our version answers with
      // the newest it speaks, then an error, and closes. One we speak too: offer it next time.
      const bool older = hello->proto >= wire::kMinProtoVersion && hello->proto < offered_;
      if (older) {
        fallback_ = hello->proto;
        common::Log(common::LogLevel::kInfo, "the supervisor speaks control protocol " +
                                                 std::to_string(hello->proto) +
                                                 ", older than ours (" + std::to_string(offered_) +
                                                 "): connecting again with its version");
      }
      Fail("the supervisor speaks protocol " + std::to_string(hello->proto) + ", we speak " +
           std::to_string(wire::kMinProtoVersion) + " to " + std::to_string(wire::kProtoVersion) +
           (older ? " (connecting again with it)" : ""));
      if (older) {
        // Without the backoff: the supervisor is there, only our hello was too new.
        timer_.cancel();
        boost::asio::post(io_, [this, gen = generation_] {
          if (gen == generation_ && state_ == State::kDown) Connect();
        });
      }
      return;
    }
    const bool restarted = hello_ && hello_->boot_id != hello->boot_id;
    hello_ = *hello;
    proto_ = hello->proto;
    if (proto_ < wire::kProtoVersion) {
      // Once per connection: what the audit log misses until monkeyproofd is upgraded too.
      common::Log(common::LogLevel::kWarning,
                  "event=supervisor_older proto=" + std::to_string(proto_) + " ours=" +
                      std::to_string(wire::kProtoVersion) + " supervisor=\"" + hello->supervisor +
                      "\": until monkeyproofd is upgraded, " + wire::MissingInProto(proto_));
    }
    state_ = State::kUp;
    timer_.cancel();
    backoff_ = std::chrono::milliseconds(50);
    last_error_.clear();
    if (reconnects_++ > 0) {
      common::Log(common::LogLevel::kInfo, std::string("supervisor link up again") +
                                               (restarted ? " (the supervisor restarted)" : ""));
    }
    if (listener_ != nullptr) listener_->OnLinkUp(*hello_);
    return;
  }
  if (state_ != State::kUp) {
    Fail("protocol error: event before hello");
    return;
  }
  if (listener_ != nullptr) listener_->OnEvent(event);
}

}  // namespace mp::http

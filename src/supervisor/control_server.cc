#include "supervisor/control_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>
#include <variant>

#include "common/log.h"
#include "common/proto_version.h"
#include "common/scope_guard.h"

namespace mp::supervisor {
namespace {

constexpr int kListenBacklog = 64;
constexpr int kMaxAcceptsPerWake = 16;  // then let other fds run; level-triggered brings us back
constexpr int kMaxFramesPerWake = 16;   // same, per connection
// After EMFILE and friends the pending connection stays queued, so a level-triggered listener
// would wake us forever: stop watching it for this long.
constexpr std::chrono::milliseconds kAcceptBackoff{100};
// A connection closed with a final error answer waits this long for the peer to take it.
constexpr std::chrono::milliseconds kLinger{2000};

// `"` `\` and control bytes escaped, so a reason cannot forge key=value pairs in the log.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += ch;
    }
  }
  out += '"';
  return out;
}

using common::LogLevel;

void Log(LogLevel level, const std::string& text) {
  common::Log(level, "component=control_server " + text);
}

std::string PeerFields(const PeerInfo& p) {
  return "pid=" + std::to_string(p.pid) + " uid=" + std::to_string(p.uid) +
         " gid=" + std::to_string(p.gid);
}

// Cuts at a UTF-8 character boundary: the encoder would turn a split character into U+FFFD
// (3 bytes) and could push the string past the decoder's cap.
std::string Cut(std::string s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t n = max_bytes;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
  s.resize(n);
  return s;
}

wire::Response ErrorResponse(uint64_t id, wire::ErrorCode code, std::string message,
                             std::string field) {
  return wire::Response{id,
                        wire::ErrorBody{code, Cut(std::move(message), wire::kMaxErrorMessageBytes),
                                        Cut(std::move(field), wire::kMaxErrorFieldBytes)}};
}

}  // namespace

struct ControlServer::Connection {
  uint64_t id = 0;
  UniqueFd fd;
  PeerInfo peer;
  bool greeted = false;  // hello exchanged
  bool closed = false;   // fd closed; waiting in the graveyard for Reap()
  bool closing = false;  // final answer queued: no more reading, close once flushed
  std::string closing_why;
  bool over_soft = false;  // the outbox reached the soft limit: on_drained is owed
  uint32_t interest = EPOLLIN;
  std::deque<std::vector<uint8_t>> outbox;  // encoded frames the socket did not take yet
  size_t outbox_bytes = 0;
  EventLoop::TimerId linger_timer = 0;
  wire::FrameAssembler parts;  // a request over one record, while its parts arrive
};

// Marks a server callback on the stack. When the outermost one returns, connections closed
// meanwhile are reported to the handler and destroyed.
class ControlServer::CallbackScope {
 public:
  explicit CallbackScope(ControlServer& s) : s_(s) { ++s_.depth_; }
  ~CallbackScope() {
    if (--s_.depth_ == 0) s_.Reap();
  }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;

 private:
  ControlServer& s_;
};

ControlServer::ControlServer(EventLoop& loop, ControlServerOptions options, RequestHandler& handler)
    : loop_(loop),
      options_(std::move(options)),
      handler_(handler),
      receive_buffer_(wire::kMaxFrameBytes) {}

Result<std::unique_ptr<ControlServer>> ControlServer::Start(EventLoop& loop,
                                                            ControlServerOptions options,
                                                            RequestHandler& handler) {
  const std::string what = "control socket " + Quote(options.socket_path);
  if (options.socket_path.empty() || options.socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
    return PlainError(what + ": path must be 1.." +
                      std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
  }
  if (options.allowed_uids.empty()) return PlainError(what + ": allowed_uids is empty");
  if (options.max_connections == 0) return PlainError(what + ": max_connections is 0");
  // Every frame must fit an empty outbox, and a drop must leave frames queued whose flushing
  // ends in on_drained; both hold when 0 < soft <= hard and hard >= one frame.
  if (options.outbox_soft_limit_bytes == 0 ||
      options.outbox_soft_limit_bytes > options.outbox_hard_limit_bytes ||
      options.outbox_hard_limit_bytes < wire::kMaxFrameBytes) {
    return PlainError(what + ": outbox limits must satisfy 0 < soft <= hard and hard >= " +
                      std::to_string(wire::kMaxFrameBytes) + " bytes");
  }
  std::unique_ptr<ControlServer> server(new ControlServer(loop, std::move(options), handler));
  if (auto listening = server->Listen(); !listening) return std::move(listening).error().Wrap(what);
  return server;
}

Result<void> ControlServer::Listen() {
  const std::string& path = options_.socket_path;
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return ErrnoError("socket(AF_UNIX, SOCK_SEQPACKET)");

  // A socket file left by a previous run makes bind fail with EADDRINUSE. Only a socket is ours
  // to remove: a regular file or a symlink there is someone's mistake (or attack) and stays.
  // The directory is root-owned 0750, so nobody else can swap the entry between lstat and unlink.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return ErrnoError(EEXIST,
                        "refusing to replace " + Quote(path) + ": it exists and is not a socket");
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError("unlink(stale socket " + Quote(path) + ")");
    }
  } else if (errno != ENOENT) {
    return ErrnoError("lstat(" + Quote(path) + ")");
  }

  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  // Linux creates the socket inode with 0777 & ~umask. 0177 keeps it 0600 root-only from bind
  // until the chown/chmod below, so it is never briefly world-connectable. umask is per
  // process, hence "call Start before other threads exist".
  const mode_t old_umask = ::umask(0177);
  const int bound = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  ::umask(old_umask);
  if (bound != 0) return ErrnoError(bind_errno, "bind(" + Quote(path) + ")");
  ScopeGuard unlink_on_error([&path] { (void)::unlink(path.c_str()); });

  if (::geteuid() == 0 &&
      ::fchownat(AT_FDCWD, path.c_str(), 0, options_.socket_group, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoError("chown(" + Quote(path) + ", 0:" + std::to_string(options_.socket_group) +
                      ")");
  }
  if (::chmod(path.c_str(), static_cast<mode_t>(options_.socket_mode & 0777)) != 0) {
    return ErrnoError("chmod(" + Quote(path) + ")");
  }
  if (::lstat(path.c_str(), &st) != 0) return ErrnoError("lstat(" + Quote(path) + ")");
  if (::listen(fd.get(), kListenBacklog) != 0) return ErrnoError("listen(" + Quote(path) + ")");
  MP_RETURN_IF_ERROR(loop_.Add(fd.get(), EPOLLIN, [this](uint32_t) { OnAccept(); }));
  socket_dev_ = st.st_dev;
  socket_ino_ = st.st_ino;
  listener_ = std::move(fd);
  unlink_on_error.Dismiss();
  return Ok();
}

ControlServer::~ControlServer() {
  loop_.CancelTimer(reap_timer_);
  loop_.CancelTimer(accept_timer_);
  for (auto& [id, c] : connections_) {
    loop_.CancelTimer(c->linger_timer);
    loop_.Remove(c->fd.get());
  }
  if (listener_) {
    loop_.Remove(listener_.get());
    // Unlink only the file we bound: a newer supervisor may already have replaced it.
    struct stat st {};
    if (::lstat(options_.socket_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == socket_dev_ && st.st_ino == socket_ino_) {
      (void)::unlink(options_.socket_path.c_str());
    }
  }
}

void ControlServer::OnAccept() {
  CallbackScope scope(*this);
  for (int i = 0; i < kMaxAcceptsPerWake; ++i) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // The peer gave up while queued, or a signal: the next one may be fine.
      if (errno == EINTR || errno == ECONNABORTED) continue;
      Log(LogLevel::kError, "event=accept_failed error=" + Quote(ErrnoError("accept4").ToString()));
      PauseAccepting();
      return;
    }
    // The kernel recorded the peer's credentials at connect(); nothing has been read yet and
    // nothing will be unless the uid is allowed. Closing with its bytes unread resets the peer.
    struct ucred cred {};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) {
      Log(LogLevel::kError,
          "event=peer_rejected reason=" + Quote(ErrnoError("getsockopt(SO_PEERCRED)").ToString()));
      continue;
    }
    PeerInfo peer{0, cred.pid, cred.uid, cred.gid, ""};
    const auto& allowed = options_.allowed_uids;
    if (std::find(allowed.begin(), allowed.end(), cred.uid) == allowed.end()) {
      Log(LogLevel::kWarning,
          "event=peer_rejected " + PeerFields(peer) + " reason=\"uid not allowed\"");
      continue;
    }
    if (connections_.size() >= options_.max_connections) {
      Log(LogLevel::kWarning, "event=peer_rejected " + PeerFields(peer) +
                                  " reason=\"max_connections (" +
                                  std::to_string(options_.max_connections) + ") reached\"");
      continue;
    }
    auto c = std::make_unique<Connection>();
    c->id = next_connection_++;
    peer.connection_id = c->id;
    c->peer = peer;
    const uint64_t id = c->id;
    if (auto added = loop_.Add(fd.get(), EPOLLIN,
                               [this, id](uint32_t events) { OnConnectionEvent(id, events); });
        !added) {
      Log(LogLevel::kError,
          "event=peer_rejected " + PeerFields(peer) + " reason=" + Quote(added.error().ToString()));
      continue;
    }
    c->fd = std::move(fd);
    Log(LogLevel::kInfo,
        "event=peer_accepted connection=" + std::to_string(id) + " " + PeerFields(peer));
    connections_.emplace(id, std::move(c));
  }
}

void ControlServer::PauseAccepting() {
  if (accept_timer_ != 0) return;
  (void)loop_.Modify(listener_.get(), 0);
  accept_timer_ = loop_.AddTimer(kAcceptBackoff, [this] {
    accept_timer_ = 0;
    if (auto resumed = loop_.Modify(listener_.get(), EPOLLIN); !resumed) {
      Log(LogLevel::kError,
          "event=accept_resume_failed error=" + Quote(resumed.error().ToString()));
    }
  });
}

void ControlServer::OnConnectionEvent(uint64_t connection_id, uint32_t events) {
  CallbackScope scope(*this);
  const auto it = connections_.find(connection_id);
  if (it == connections_.end()) return;
  Connection& c = *it->second;
  // Writing first frees outbox space before we read more requests that produce responses.
  if (events & EPOLLOUT) {
    Flush(c);
    if (c.closed) return;
  }
  if (events & EPOLLIN) {
    // Frames still queued when the peer hung up are read first; EOF comes after them.
    OnReadable(c);
  } else if (events & (EPOLLHUP | EPOLLERR)) {
    int so_error = 0;
    socklen_t len = sizeof so_error;
    (void)::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &so_error, &len);
    Close(c, so_error != 0 ? std::string("socket error: ") + std::strerror(so_error)
                           : std::string("peer hung up"));
  }
}

void ControlServer::OnReadable(Connection& c) {
  for (int i = 0; i < kMaxFramesPerWake && !c.closed && !c.closing; ++i) {
    auto received = wire::ReceiveFrame(c.fd.get(), receive_buffer_, c.parts);
    if (!received) {
      Close(c, "protocol error: " + received.error().ToString());
      return;
    }
    switch (received->status) {
      case wire::ReceiveStatus::kWouldBlock:
        return;
      case wire::ReceiveStatus::kPart:
        // Only a greeted peer may make us hold up to kMaxMessageBytes.
        if (!c.greeted) {
          Close(c, "protocol error: a part record before hello");
          return;
        }
        break;
      case wire::ReceiveStatus::kClosed:
        Close(c, "peer closed the connection");
        return;
      case wire::ReceiveStatus::kFrame:
        HandleFrame(c, received->frame);
        break;
    }
  }
}

void ControlServer::HandleFrame(Connection& c, const wire::FrameView& frame) {
  wire::DecodeDetail detail;
  auto request = wire::DecodeRequest(frame, &detail);

  if (!c.greeted) {
    // docs/protocol.md, Handshake: anything but a good hello first is fatal. The error answer
    // is for the humans reading the API's log; id 0 when the frame had none.
    if (!request) {
      FailAndClose(c, detail.id.value_or(0), "expected hello: " + request.error().what,
                   detail.field, "bad first frame");
      return;
    }
    if (request->type() != wire::RequestType::kHello) {
      FailAndClose(
          c, request->id,
          "the first request must be hello, got " + std::string(wire::ToString(request->type())),
          "/type", "request before hello");
      return;
    }
    const auto& hello = std::get<wire::HelloRequest>(request->body);
    // protocol.md, Versions: a peer of any version we still speak gets its own version back,
    // so an API from an earlier release keeps working while the two are upgraded apart.
    const bool spoken = hello.proto >= wire::kMinProtoVersion && hello.proto <= wire::kProtoVersion;
    wire::ServerHello ours{spoken ? hello.proto : wire::kProtoVersion, options_.supervisor_version,
                           options_.boot_id};
    if (!spoken) {
      // protocol.md: answer with our own hello, whose proto tells the client the newest we
      // speak (an older client then offers that, a newer one its own older version), and
      // close; the error that follows spells it out.
      if (auto frame_bytes = wire::EncodeEvent(ours); frame_bytes) {
        if (Enqueue(c, std::move(*frame_bytes), false) == EnqueueResult::kClosed) return;
      }
      FailAndClose(c, 0,
                   "protocol version " + std::to_string(hello.proto) +
                       " is not supported; this supervisor speaks versions " +
                       std::to_string(wire::kMinProtoVersion) + " to " +
                       std::to_string(wire::kProtoVersion),
                   "/proto", "protocol version mismatch");
      return;
    }
    auto frame_bytes = wire::EncodeEvent(ours);
    if (!frame_bytes) {
      Close(c, "server hello: " + frame_bytes.error().ToString());
      return;
    }
    c.greeted = true;
    c.peer.client = hello.client;
    c.peer.proto = hello.proto;
    Log(LogLevel::kInfo, "event=hello connection=" + std::to_string(c.id) + " " +
                             PeerFields(c.peer) + " client=" + Quote(hello.client) +
                             " proto=" + std::to_string(hello.proto));
    Enqueue(c, std::move(*frame_bytes), false);
    return;
  }

  if (!request) {
    // Without an id the answer could not be matched to anything: the peer is broken.
    if (!detail.id) {
      Close(c, "undecodable request without an id: " + request.error().what);
      return;
    }
    EnqueueResponse(c, ErrorResponse(*detail.id, wire::ErrorCode::kBadRequest, request.error().what,
                                     detail.field));
    return;
  }
  if (request->type() == wire::RequestType::kHello) {
    FailAndClose(c, 0, "hello after the handshake", "/type", "second hello");
    return;
  }
  // A peer of an older version gets what that version's decoder would have answered: members
  // and actions it does not have are unknown to it.
  if (auto need = wire::RequiredProto(request->body); need.version > c.peer.proto) {
    EnqueueResponse(c, ErrorResponse(request->id, wire::ErrorCode::kBadRequest,
                                     std::move(need.what), std::move(need.field)));
    return;
  }
  handler_.OnRequest(c.peer, *request);
}

ControlServer::EnqueueResult ControlServer::Enqueue(Connection& c, std::vector<uint8_t> frame,
                                                    bool droppable) {
  if (c.closed) return EnqueueResult::kClosed;
  const size_t soft = options_.outbox_soft_limit_bytes;
  const size_t hard = options_.outbox_hard_limit_bytes;
  if (droppable && (c.outbox_bytes >= soft || c.outbox_bytes + frame.size() > hard)) {
    c.over_soft = true;
    return EnqueueResult::kDropped;
  }
  if (c.outbox.empty()) {
    // Write-through: an idle connection needs no queueing and no EPOLLOUT round trip.
    auto sent = wire::SendFrame(c.fd.get(), frame);
    if (!sent) {
      Close(c, "send: " + sent.error().ToString());
      return EnqueueResult::kClosed;
    }
    if (*sent == wire::SendStatus::kSent) return EnqueueResult::kQueued;
  }
  if (c.outbox_bytes + frame.size() > hard) {
    Close(c, "outbox over its hard limit: " + std::to_string(c.outbox_bytes) +
                 " bytes queued, a frame of " + std::to_string(frame.size()) +
                 " bytes would pass " + std::to_string(hard) + " (peer not reading?)");
    return EnqueueResult::kClosed;
  }
  c.outbox_bytes += frame.size();
  c.outbox.push_back(std::move(frame));
  if (c.outbox_bytes >= soft) c.over_soft = true;
  UpdateInterest(c);
  return EnqueueResult::kQueued;
}

void ControlServer::EnqueueResponse(Connection& c, const wire::Response& response) {
  // Members the peer's version lacks are left out (its decoder refuses unknown ones).
  if (c.peer.proto < wire::kProtoVersion &&
      (std::holds_alternative<wire::SessionInfo>(response.body) ||
       std::holds_alternative<wire::SessionList>(response.body) ||
       std::holds_alternative<wire::HealthInfo>(response.body))) {
    wire::Response fitted = response;
    wire::FitResponseToProto(fitted, c.peer.proto);
    if (fitted != response) {
      EnqueueResponse(c, fitted);
      return;
    }
  }
  // An error code the peer's version lacks is told as the nearest one it has.
  if (const auto* e = std::get_if<wire::ErrorBody>(&response.body);
      e != nullptr && wire::ErrorCodeIn(e->code, c.peer.proto) != e->code) {
    wire::Response fitted = response;
    std::get<wire::ErrorBody>(fitted.body).code = wire::ErrorCodeIn(e->code, c.peer.proto);
    EnqueueResponse(c, fitted);
    return;
  }
  auto frame = wire::EncodeResponse(response);
  if (!frame) {
    // Too big for one frame: a handler bug, but the request still gets its one answer.
    Log(LogLevel::kError, "event=response_unencodable connection=" + std::to_string(c.id) +
                              " id=" + std::to_string(response.id) +
                              " error=" + Quote(frame.error().ToString()));
    frame = wire::EncodeResponse(
        ErrorResponse(response.id, wire::ErrorCode::kInternal,
                      "the response could not be encoded: " + frame.error().ToString(), ""));
    if (!frame) {
      Close(c, "error response unencodable: " + frame.error().ToString());
      return;
    }
  }
  Enqueue(c, std::move(*frame), false);
}

void ControlServer::FailAndClose(Connection& c, uint64_t request_id, std::string message,
                                 std::string field, std::string why) {
  EnqueueResponse(c, ErrorResponse(request_id, wire::ErrorCode::kBadRequest, std::move(message),
                                   std::move(field)));
  if (c.closed) return;
  if (c.outbox.empty()) {
    Close(c, why);
    return;
  }
  c.closing = true;
  c.closing_why = std::move(why);
  UpdateInterest(c);  // stop reading; Flush closes once the answer is out
  const uint64_t id = c.id;
  c.linger_timer = loop_.AddTimer(kLinger, [this, id] {
    CallbackScope scope(*this);
    const auto it = connections_.find(id);
    if (it == connections_.end()) return;
    it->second->linger_timer = 0;
    Close(*it->second, it->second->closing_why + " (final answer not read in time)");
  });
}

void ControlServer::Flush(Connection& c) {
  while (!c.outbox.empty()) {
    auto sent = wire::SendFrame(c.fd.get(), c.outbox.front());
    if (!sent) {
      Close(c, "send: " + sent.error().ToString());
      return;
    }
    if (*sent == wire::SendStatus::kWouldBlock) break;
    c.outbox_bytes -= c.outbox.front().size();
    c.outbox.pop_front();
  }
  if (c.closing && c.outbox.empty()) {
    Close(c, c.closing_why);
    return;
  }
  UpdateInterest(c);
  if (c.closed) return;
  if (c.over_soft && c.outbox_bytes <= options_.outbox_soft_limit_bytes / 2) {
    c.over_soft = false;
    if (c.greeted && options_.on_drained) options_.on_drained(c.id);
  }
}

void ControlServer::UpdateInterest(Connection& c) {
  if (c.closed) return;
  const uint32_t want = (c.closing ? 0u : static_cast<uint32_t>(EPOLLIN)) |
                        (c.outbox.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT));
  if (want == c.interest) return;
  if (auto modified = loop_.Modify(c.fd.get(), want); !modified) {
    Close(c, "epoll: " + modified.error().ToString());
    return;
  }
  c.interest = want;
}

void ControlServer::Close(Connection& c, const std::string& why) {
  if (c.closed) return;
  c.closed = true;
  Log(LogLevel::kInfo, "event=closed connection=" + std::to_string(c.id) + " " +
                           PeerFields(c.peer) + " outbox_bytes=" + std::to_string(c.outbox_bytes) +
                           " reason=" + Quote(why));
  loop_.CancelTimer(c.linger_timer);
  c.linger_timer = 0;
  loop_.Remove(c.fd.get());
  (void)c.fd.Close();
  c.outbox.clear();
  c.outbox_bytes = 0;
  const auto it = connections_.find(c.id);
  if (it != connections_.end()) {
    // `c` stays alive in the graveyard: callers up the stack may still hold it.
    graveyard_.push_back(std::move(it->second));
    connections_.erase(it);
  }
  // Outside any server callback (Send from a session's timer, say) the handler may be on the
  // stack right now: tell it about the disconnect from a fresh loop iteration instead.
  if (depth_ == 0 && reap_timer_ == 0) {
    reap_timer_ = loop_.AddTimer(std::chrono::milliseconds(0), [this] {
      reap_timer_ = 0;
      CallbackScope scope(*this);
    });
  }
}

void ControlServer::Reap() {
  ++depth_;  // a Close from inside OnDisconnect lands in the graveyard and is handled below
  while (!graveyard_.empty()) {
    std::vector<std::unique_ptr<Connection>> dead = std::move(graveyard_);
    graveyard_.clear();
    for (const auto& c : dead) {
      if (c->greeted) handler_.OnDisconnect(c->peer);
    }
  }
  --depth_;
}

void ControlServer::Send(uint64_t connection_id, const wire::Response& response) {
  const auto it = connections_.find(connection_id);
  if (it == connections_.end()) return;  // gone meanwhile: its OnDisconnect is (or was) due
  EnqueueResponse(*it->second, response);
}

EventSendResult ControlServer::SendEvent(uint64_t connection_id, const wire::Event& event) {
  const auto it = connections_.find(connection_id);
  if (it == connections_.end() || !it->second->greeted) return EventSendResult::kNoPeer;
  Connection& c = *it->second;
  auto frame = wire::EncodeEvent(event);
  if (!frame) {
    // Output events are at most kMaxChunkBytes by contract; a bigger one is a caller bug.
    Log(LogLevel::kError, "event=event_unencodable connection=" + std::to_string(c.id) +
                              " error=" + Quote(frame.error().ToString()));
    return EventSendResult::kDropped;
  }
  const bool droppable = std::holds_alternative<wire::OutputEvent>(event);
  switch (Enqueue(c, std::move(*frame), droppable)) {
    case EnqueueResult::kQueued:
      return EventSendResult::kQueued;
    case EnqueueResult::kDropped:
      return EventSendResult::kDropped;
    case EnqueueResult::kClosed:
      break;
  }
  return EventSendResult::kNoPeer;
}

size_t ControlServer::OutboxBytes(uint64_t connection_id) const {
  const auto it = connections_.find(connection_id);
  return it == connections_.end() ? 0 : it->second->outbox_bytes;
}

size_t ControlServer::connection_count() const { return connections_.size(); }

}  // namespace mp::supervisor

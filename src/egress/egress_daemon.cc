// monkeyproof-egress's handover socket and sessions. See egress_daemon.h.
#include "egress/egress_daemon.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <cstring>
#include <deque>
#include <utility>

#include "common/log.h"
#include "egress/handover.h"
#include "egress/verdict_report.h"

namespace mp::egress {

namespace asio = boost::asio;
using common::Log;
using common::LogLevel;

struct EgressDaemon::Acceptor {
  explicit Acceptor(asio::io_context& io) : sd(io) {}
  asio::posix::stream_descriptor sd;
};

struct EgressDaemon::Connection {
  Connection(asio::io_context& io, int fd) : sd(io, fd) {}
  uint64_t id = 0;
  asio::posix::stream_descriptor sd;
  std::map<std::string, std::shared_ptr<EgressSession>> sessions;
  uint32_t reports = 0;            // the report version the supervisor reads; 0: none
  std::deque<std::string> outbox;  // reports its socket did not take yet
  bool waiting_write = false;      // a wait for writability is pending
  uint64_t dropped = 0;            // reports dropped on this connection (queue full)
};

EgressDaemon::EgressDaemon(asio::io_context& io, DaemonOptions options,
                           std::shared_ptr<Resolver> resolver, VerdictCallback on_verdict)
    : io_(io),
      options_(std::move(options)),
      resolver_(std::move(resolver)),
      on_verdict_(std::move(on_verdict)),
      acceptor_(std::make_unique<Acceptor>(io)) {}

EgressDaemon::~EgressDaemon() { Stop(); }

Result<std::unique_ptr<EgressDaemon>> EgressDaemon::Create(asio::io_context& io,
                                                           DaemonOptions options,
                                                           std::shared_ptr<Resolver> resolver,
                                                           VerdictCallback on_verdict) {
  const std::string path = options.socket_path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return PlainError("handover socket path \"" + path + "\" is empty or longer than " +
                      std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return ErrnoError("socket(AF_UNIX, SOCK_SEQPACKET)");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return PlainError("\"" + path + "\" exists and is not a socket; remove it or choose another");
    }
    if (::unlink(path.c_str()) < 0) return ErrnoError("unlink(stale socket \"" + path + "\")");
  }
  // Only the owner (this daemon's user) and root, which the peer check then narrows to
  // supervisor_uid, may connect.
  const mode_t old_mask = ::umask(0077);
  const int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  ::umask(old_mask);
  if (rc < 0) return ErrnoError(bind_errno, "bind(\"" + path + "\")");
  if (::listen(fd.get(), 8) < 0) return ErrnoError("listen(\"" + path + "\")");
  std::unique_ptr<EgressDaemon> d(
      new EgressDaemon(io, std::move(options), std::move(resolver), std::move(on_verdict)));
  d->acceptor_->sd.assign(fd.Release());
  return d;
}

void EgressDaemon::Start() { WaitAccept(); }

void EgressDaemon::Stop() {
  if (stopped_) return;
  stopped_ = true;
  boost::system::error_code ignored;
  acceptor_->sd.close(ignored);
  auto connections = std::move(connections_);
  for (auto& [id, c] : connections) {
    for (auto& [session, s] : c->sessions) s->Stop();
    c->sessions.clear();
    c->sd.close(ignored);
  }
}

size_t EgressDaemon::session_count() const {
  size_t n = 0;
  for (const auto& [id, c] : connections_) n += c->sessions.size();
  return n;
}

void EgressDaemon::WaitAccept() {
  if (stopped_) return;
  acceptor_->sd.async_wait(asio::posix::descriptor_base::wait_read,
                           [this](const boost::system::error_code& ec) {
                             if (ec || stopped_) return;
                             OnAcceptable();
                             WaitAccept();
                           });
}

void EgressDaemon::OnAcceptable() {
  for (;;) {
    UniqueFd fd(
        ::accept4(acceptor_->sd.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        Log(LogLevel::kError, "event=accept_failed", errno);
      }
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    ucred peer{};
    socklen_t len = sizeof peer;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0) {
      Log(LogLevel::kWarning, "event=peer_rejected reason=no_credentials", errno);
      continue;
    }
    if (peer.uid != options_.supervisor_uid) {
      Log(LogLevel::kWarning, "event=peer_rejected uid=" + std::to_string(peer.uid) +
                                  " pid=" + std::to_string(peer.pid) +
                                  " want_uid=" + std::to_string(options_.supervisor_uid));
      continue;
    }
    if (connections_.size() >= kMaxSupervisorConnections) {
      Log(LogLevel::kWarning,
          "event=peer_rejected reason=too_many_connections pid=" + std::to_string(peer.pid));
      continue;
    }
    auto c = std::make_shared<Connection>(io_, fd.Release());
    c->id = next_connection_++;
    connections_[c->id] = c;
    Log(LogLevel::kInfo, "event=supervisor_connected pid=" + std::to_string(peer.pid) +
                             " connection=" + std::to_string(c->id));
    WaitRecord(c);
  }
}

void EgressDaemon::WaitRecord(const std::shared_ptr<Connection>& c) {
  std::weak_ptr<Connection> weak = c;
  c->sd.async_wait(asio::posix::descriptor_base::wait_read,
                   [this, weak](const boost::system::error_code& ec) {
                     auto live = weak.lock();
                     if (!live || stopped_ || !connections_.contains(live->id)) return;
                     if (ec) return Drop(live, ec.message());
                     OnRecord(live);
                   });
}

void EgressDaemon::OnRecord(const std::shared_ptr<Connection>& c) {
  auto received = ReceiveRecord(c->sd.native_handle());
  if (!received) {
    if (received.error().errnum == EAGAIN) return WaitRecord(c);
    return Drop(c, received.error().ToString());
  }
  if (received->closed) return Drop(c, "closed by the supervisor");
  auto message = DecodeHandover(received->record, received->fds.size());
  if (!message) return Drop(c, "bad handover record: " + message.error().ToString());
  const std::string& id = message->session;
  // Whichever connection served this session before (a re-hand) stops serving it now.
  for (auto& [cid, other] : connections_) {
    if (auto it = other->sessions.find(id); it != other->sessions.end()) {
      it->second->Stop();
      other->sessions.erase(it);
    }
  }
  if (message->type == HandoverMessage::Type::kHello) {
    if (message->reports != kVerdictReportVersion) {
      // A newer supervisor than this daemon: it gets no reports rather than ones it misreads.
      Log(LogLevel::kWarning, "event=reports_refused connection=" + std::to_string(c->id) +
                                  " version=" + std::to_string(message->reports) +
                                  " ours=" + std::to_string(kVerdictReportVersion));
    } else {
      c->reports = kVerdictReportVersion;
    }
    return WaitRecord(c);
  }
  if (message->type == HandoverMessage::Type::kClose) {
    Log(LogLevel::kInfo, "event=session_closed session=" + id);
    return WaitRecord(c);
  }
  auto allow = AllowList::Parse(message->allow);
  if (!allow) {
    // The sockets close here: the session's connections are refused (fail closed).
    Log(LogLevel::kError,
        "event=session_refused session=" + id + " reason=\"" + allow.error().ToString() + "\"");
    return WaitRecord(c);
  }
  GatewayConfig config;
  config.session_id = id;
  config.allow = std::move(*allow);
  config.limits = options_.limits;
  config.test_private_upstreams = options_.test_private_upstreams;
  config.upstream_ca_file = options_.upstream_ca_file;
  GatewayListeners listeners{std::move(received->fds[0]),
                             std::move(received->fds[1]),
                             std::move(received->fds[2]),
                             std::move(received->fds[3]),
                             {}};
  // DecodeHandover checked the count: one descriptor per endpoint after the four.
  for (size_t i = 0; i < message->endpoints.size(); ++i) {
    HandoverEndpoint& e = message->endpoints[i];
    auto upstream = ParseUpstreamUrl(e.upstream);
    if (!upstream) {  // DecodeHandover checked it too
      Log(LogLevel::kError, "event=session_refused session=" + id + " reason=\"" +
                                upstream.error().ToString() + "\"");
      return WaitRecord(c);
    }
    config.endpoints.push_back(
        ModelEndpoint{std::move(*upstream), std::move(e.header), std::move(e.value)});
    listeners.endpoints.push_back(std::move(received->fds[kHandoverFdCount + i]));
  }
  std::weak_ptr<Connection> weak = c;
  auto report = [this, weak](const Verdict& v) {
    if (on_verdict_) on_verdict_(v);
    if (auto live = weak.lock(); live && !stopped_ && connections_.contains(live->id)) {
      SendReport(live, v);
    }
  };
  auto session =
      EgressSession::Create(io_, std::move(config), std::move(listeners), resolver_, report);
  if (!session) {
    Log(LogLevel::kError,
        "event=session_refused session=" + id + " reason=\"" + session.error().ToString() + "\"");
    return WaitRecord(c);
  }
  (*session)->Start();
  c->sessions[id] = *session;
  Log(LogLevel::kInfo, "event=session_opened session=" + id +
                           " rules=" + std::to_string(message->allow.size()) +
                           " endpoints=" + std::to_string(message->endpoints.size()));
  WaitRecord(c);
}

void EgressDaemon::SendReport(const std::shared_ptr<Connection>& c, const Verdict& v) {
  if (c->reports == 0) return;
  if (c->outbox.size() >= kMaxQueuedReports) {
    if (c->dropped == 0) {
      Log(LogLevel::kWarning, "event=reports_dropping connection=" + std::to_string(c->id) +
                                  " queued=" + std::to_string(c->outbox.size()) +
                                  " (the supervisor does not read them)");
    }
    ++c->dropped;
    ++reports_dropped_;
    return;
  }
  VerdictReport r;
  r.kind = KindOfListener(v.listener);
  r.allowed = v.allowed;
  r.port = v.port;
  r.bytes_up = v.allowed ? v.bytes_up : 0;
  r.bytes_down = v.allowed ? v.bytes_down : 0;
  r.dropped = c->dropped;
  r.session = v.session_id;
  r.name = v.name;
  r.reason = v.allowed ? std::string_view() : std::string_view(v.reason);
  c->outbox.push_back(EncodeVerdictReport(r));
  FlushReports(c);
}

void EgressDaemon::FlushReports(const std::shared_ptr<Connection>& c) {
  while (!c->outbox.empty() && !c->waiting_write) {
    ssize_t n;
    do {
      n = ::send(c->sd.native_handle(), c->outbox.front().data(), c->outbox.front().size(),
                 MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->waiting_write = true;
      std::weak_ptr<Connection> weak = c;
      c->sd.async_wait(asio::posix::descriptor_base::wait_write,
                       [this, weak](const boost::system::error_code& ec) {
                         auto live = weak.lock();
                         if (!live) return;
                         live->waiting_write = false;
                         if (ec || stopped_ || !connections_.contains(live->id)) return;
                         FlushReports(live);
                       });
      return;
    }
    if (n < 0) {
      // The connection is broken: its read side notices and drops it.
      c->outbox.clear();
      return;
    }
    c->outbox.pop_front();
  }
}

void EgressDaemon::Drop(const std::shared_ptr<Connection>& c, const std::string& why) {
  for (auto& [id, s] : c->sessions) s->Stop();
  Log(LogLevel::kInfo, "event=supervisor_disconnected connection=" + std::to_string(c->id) +
                           " sessions_stopped=" + std::to_string(c->sessions.size()) +
                           " reason=\"" + why + "\"");
  c->sessions.clear();
  boost::system::error_code ignored;
  c->sd.close(ignored);
  connections_.erase(c->id);
}

}  // namespace mp::egress

// The supervisor's handover to monkeyproof-egress. See egress_link.h.
#include "supervisor/egress_link.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "common/log.h"
#include "egress/handover.h"
#include "sandbox/session_netns.h"

namespace mp::supervisor {

using common::Log;
using common::LogLevel;

namespace {

constexpr char kResolvConfText[] =
    "# monkeyproof: an allowlist session's stub DNS (monkeyproof-egress)\n"
    "nameserver 127.0.0.1\n"
    "options edns0 trust-ad\n";

void SetEnv(std::vector<std::string>& env, const std::string& entry) {
  const std::string prefix = entry.substr(0, entry.find('=') + 1);
  std::erase_if(env, [&](const std::string& e) { return e.starts_with(prefix); });
  env.push_back(entry);
}

}  // namespace

std::vector<std::string> EgressProxyEnvironment() {
  const std::string proxy = std::string("http://") + sandbox::kEgressProxyAddress + ":" +
                            std::to_string(sandbox::kEgressProxyPort);
  const std::string no_proxy = "localhost,127.0.0.1,::1";
  return {"HTTPS_PROXY=" + proxy, "https_proxy=" + proxy, "HTTP_PROXY=" + proxy,
          "http_proxy=" + proxy,  "NO_PROXY=" + no_proxy, "no_proxy=" + no_proxy,
          "NODE_USE_ENV_PROXY=1"};
}

EgressLink::EgressLink(EventLoop& loop, std::string socket_path, std::string resolv_conf)
    : loop_(loop), socket_path_(std::move(socket_path)), resolv_conf_(std::move(resolv_conf)) {}

EgressLink::~EgressLink() {
  if (retry_) loop_.CancelTimer(*retry_);
  if (socket_) loop_.Remove(socket_.get());
}

Result<void> EgressLink::EnsureResolvConf() {
  struct stat st {};
  if (::stat(resolv_conf_.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return Ok();
  UniqueFd fd(
      ::open(resolv_conf_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) return ErrnoError("open(\"" + resolv_conf_ + "\")");
  const size_t len = sizeof kResolvConfText - 1;
  if (::write(fd.get(), kResolvConfText, len) != static_cast<ssize_t>(len)) {
    return ErrnoError("write(\"" + resolv_conf_ + "\")");
  }
  return Ok();
}

Result<void> EgressLink::Begin(const std::string& id, std::vector<std::string> allow,
                               std::vector<egress::HandoverEndpoint> endpoints,
                               sandbox::SpawnRequest& request) {
  const std::string where = "allowlist network of " + id;
  if (auto ok = EnsureResolvConf(); !ok) return ok.error().Wrap(where);
  auto ns = sandbox::CreateAllowlistNetns();
  if (!ns) return ns.error().Wrap(where);
  Entry& entry = sessions_[id];
  entry.netns = std::move(*ns);
  entry.allow = std::move(allow);
  entry.endpoints = std::move(endpoints);
  request.netns_fd = entry.netns.get();
  for (const std::string& e : EgressProxyEnvironment()) SetEnv(request.env, e);
  request.binds.push_back({resolv_conf_, "/etc/resolv.conf", sandbox::BindMode::kReadOnly});
  HandOrConnect(id, entry);
  return Ok();
}

void EgressLink::HandOrConnect(const std::string& id, const Entry& entry) {
  if (socket_) {
    Hand(id, entry);
  } else {
    TryConnect();  // hands every session, this one included, when the daemon is there
  }
}

Result<void> EgressLink::Resume(const std::string& id, std::vector<std::string> allow,
                                std::vector<egress::HandoverEndpoint> endpoints, int init_pidfd) {
  auto ns = sandbox::OpenNetnsOf(init_pidfd);
  if (!ns) return ns.error().Wrap("allowlist network of " + id);
  Entry& entry = sessions_[id];
  entry.netns = std::move(*ns);
  entry.allow = std::move(allow);
  entry.endpoints = std::move(endpoints);
  HandOrConnect(id, entry);
  return Ok();
}

void EgressLink::End(const std::string& id) {
  if (sessions_.erase(id) == 0) return;
  if (!socket_) return;
  egress::HandoverMessage close{egress::HandoverMessage::Type::kClose, id, {}};
  if (auto sent = egress::SendRecord(socket_.get(), egress::EncodeHandover(close), {}); !sent) {
    Disconnect(sent.error().ToString());
  }
}

bool EgressLink::Hand(const std::string& id, const Entry& entry) {
  auto listeners = sandbox::CreateEgressListeners(entry.netns.get(), entry.endpoints.size());
  if (!listeners) {
    // This session's alone (its own process may hold one of the ports while the daemon was
    // away): it stays without listeners, its connections fail; the link and every other
    // session go on.
    Log(LogLevel::kWarning, "component=egress event=hand_failed session=" + id + " " +
                                listeners.error().ToString() +
                                " (its connections fail until monkeyproof-egress restarts)");
    return true;
  }
  std::vector<int> fds = {listeners->proxy.get(), listeners->tls.get(), listeners->http.get(),
                          listeners->dns.get()};
  for (const UniqueFd& fd : listeners->endpoints) fds.push_back(fd.get());
  egress::HandoverMessage open{egress::HandoverMessage::Type::kOpen, id, entry.allow,
                               entry.endpoints};
  // Our copies close when `listeners` goes out of scope: the daemon holds the only ones.
  if (auto sent = egress::SendRecord(socket_.get(), egress::EncodeHandover(open), fds); !sent) {
    Disconnect(sent.error().ToString());
    return false;
  }
  return true;
}

void EgressLink::TryConnect() {
  if (socket_) return;
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (!s || socket_path_.empty() || socket_path_.size() >= sizeof addr.sun_path) {
    return ScheduleRetry();
  }
  std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    if (!warned_absent_) {
      Log(LogLevel::kWarning,
          "component=egress event=unavailable socket=" + socket_path_ +
              " allowlist sessions' connections fail until monkeyproof-egress runs",
          errno);
      warned_absent_ = true;
    }
    return ScheduleRetry();
  }
  const int fd = s.get();
  ucred cred{};
  socklen_t cred_len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) < 0) cred = {};
  // First, before any session: the report version this supervisor reads.
  egress::HandoverMessage hello;
  hello.type = egress::HandoverMessage::Type::kHello;
  hello.reports = egress::kVerdictReportVersion;
  if (auto sent = egress::SendRecord(fd, egress::EncodeHandover(hello), {}); !sent) {
    Log(LogLevel::kWarning, "component=egress event=hello_failed " + sent.error().ToString());
    return ScheduleRetry();
  }
  auto watched = loop_.Add(fd, EPOLLIN | EPOLLRDHUP, [this](uint32_t) { ReadReports(); });
  if (!watched) {
    Log(LogLevel::kError, "component=egress event=watch_failed " + watched.error().ToString());
    return ScheduleRetry();
  }
  socket_ = std::move(s);
  warned_absent_ = false;
  peer_ = {cred.pid, cred.uid};
  peer_dropped_ = 0;
  bad_logged_ = 0;
  Log(LogLevel::kInfo, "component=egress event=connected socket=" + socket_path_ +
                           " sessions=" + std::to_string(sessions_.size()));
  for (const auto& [id, entry] : sessions_) {
    if (!Hand(id, entry)) return;
  }
}

namespace {

// The most descriptors one SCM_RIGHTS message carries (the kernel's SCM_MAX_FD).
constexpr size_t kScmMaxFd = 253;

// Closes descriptors the egress daemon sent where they cannot stall the event loop: the last
// close of a socket with SO_LINGER and unsent data waits out its linger time, a file of a
// FUSE mount waits for its server (review rev20, F1). Sockets lose their linger first, and the
// close itself happens on one thread of its own, started when first needed.
void CloseAside(std::vector<int> fds) {
  static std::mutex mutex;
  static std::vector<int> queue;
  static bool started = false;
  static std::condition_variable ready;
  for (int fd : fds) {
    const linger off{0, 0};
    (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof off);  // ENOTSOCK: not a socket
  }
  std::lock_guard lock(mutex);
  queue.insert(queue.end(), fds.begin(), fds.end());
  ready.notify_one();
  if (started) return;
  started = true;
  std::thread([] {
    for (;;) {
      std::vector<int> batch;
      {
        std::unique_lock wait(mutex);
        ready.wait(wait, [] { return !queue.empty(); });
        batch.swap(queue);
      }
      for (int fd : batch) ::close(fd);
    }
  }).detach();
}

}  // namespace

void EgressLink::ReadReports() {
  // One byte more than the largest report, to tell a longer record (MSG_TRUNC gives its size).
  std::array<char, egress::kMaxVerdictReportBytes + 1> buffer;
  // Room for every descriptor a record may carry: with less, the kernel would close the rest
  // in this thread. A record with any is a protocol error.
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kScmMaxFd)> control;
  for (size_t i = 0; i < kMaxReportsPerWakeup && socket_; ++i) {
    iovec iov{buffer.data(), buffer.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t n;
    do {
      n = ::recvmsg(socket_.get(), &msg, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    std::vector<int> fds;
    for (cmsghdr* c = n >= 0 ? CMSG_FIRSTHDR(&msg) : nullptr; c != nullptr;
         c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t k = 0; k < count; ++k) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
        fds.push_back(fd);
      }
    }
    if (!fds.empty() || (n >= 0 && (msg.msg_flags & MSG_CTRUNC) != 0)) {
      CloseAside(std::move(fds));
      return Disconnect("monkeyproof-egress sent descriptors on the handover socket");
    }
    if (n <= 0) {
      return Disconnect(n == 0
                            ? "monkeyproof-egress closed the handover socket"
                            : std::string("error on the handover socket: ") + std::strerror(errno));
    }
    const bool truncated = static_cast<size_t>(n) > egress::kMaxVerdictReportBytes;
    OnReport(std::string_view(buffer.data(), truncated ? 0 : static_cast<size_t>(n)), truncated);
  }
}

void EgressLink::OnReport(std::string_view record, bool truncated) {
  auto report = truncated ? Result<egress::VerdictReport>(PlainError(
                                "verdict report longer than " +
                                std::to_string(egress::kMaxVerdictReportBytes) + " bytes"))
                          : egress::DecodeVerdictReport(record);
  if (!report) {
    ++reports_refused_;
    if (bad_logged_ < kMaxLoggedBadReports) {
      ++bad_logged_;
      Log(LogLevel::kWarning,
          "component=egress event=report_refused reason=\"" + report.error().ToString() + "\"" +
              (bad_logged_ == kMaxLoggedBadReports ? " (further ones on this connection are "
                                                     "counted, not logged)"
                                                   : ""));
    }
    return;
  }
  if (report->dropped > peer_dropped_) {
    // Saturating: the daemon's numbers are not trusted to stay small (review rev20, F3).
    reports_dropped_ += std::min(report->dropped - peer_dropped_, UINT64_MAX - reports_dropped_);
    peer_dropped_ = report->dropped;
  }
  if (on_report_) on_report_(*report, peer_);
}

void EgressLink::Disconnect(const std::string& why) {
  if (socket_) {
    loop_.Remove(socket_.get());
    socket_.Reset();
    Log(LogLevel::kWarning, "component=egress event=disconnected reason=\"" + why + "\"");
  }
  ScheduleRetry();
}

void EgressLink::ScheduleRetry() {
  if (retry_ || sessions_.empty()) return;
  retry_ = loop_.AddTimer(kEgressRetryInterval, [this] {
    retry_.reset();
    TryConnect();
  });
}

}  // namespace mp::supervisor

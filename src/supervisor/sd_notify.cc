#include "supervisor/sd_notify.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <cstring>

#include "common/names.h"

namespace mp::supervisor::sd {
namespace {

// A decimal number with nothing around it (no sign, no blanks), as systemd writes them.
std::optional<uint64_t> ParseDecimal(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

constexpr FdKind kKinds[] = {FdKind::kPidfd, FdKind::kStatus, FdKind::kIn,    FdKind::kOut,
                             FdKind::kErr,   FdKind::kPty,    FdKind::kStage, FdKind::kPtyQueue};

}  // namespace

Result<NotifyAddress> ParseNotifyAddress(std::string_view value) {
  NotifyAddress a;
  a.addr.sun_family = AF_UNIX;
  if (value.empty()) return PlainError("NOTIFY_SOCKET is empty");
  if (value.front() != '/' && value.front() != '@') {
    // systemd ≥ 253 also speaks "vsock:CID:PORT"; a supervisor runs on the host, never in a VM
    // that reports to its host's manager.
    return PlainError("NOTIFY_SOCKET \"" + std::string(value) +
                      "\" is neither an absolute path nor an abstract name (@...)");
  }
  if (value.size() > sizeof a.addr.sun_path - (value.front() == '/' ? 1 : 0) || value.size() < 2) {
    return PlainError("NOTIFY_SOCKET \"" + std::string(value) + "\" has a bad length (1.." +
                      std::to_string(sizeof a.addr.sun_path - 1) + " bytes after the first)");
  }
  std::memcpy(a.addr.sun_path, value.data(), value.size());
  // An abstract address starts with a NUL and is exactly as long as given (no terminator);
  // a path is terminated and its length counts without the terminator, like systemd's.
  if (value.front() == '@') a.addr.sun_path[0] = '\0';
  a.len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + value.size());
  return a;
}

Result<std::optional<Notifier>> Notifier::FromEnvironment() {
  const char* v = std::getenv("NOTIFY_SOCKET");
  if (v == nullptr || v[0] == '\0') return std::optional<Notifier>();
  MP_TRY(Notifier n, Connect(v));
  return std::optional<Notifier>(std::move(n));
}

Result<Notifier> Notifier::Connect(std::string_view notify_socket) {
  MP_TRY(const NotifyAddress address, ParseNotifyAddress(notify_socket));
  UniqueFd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return ErrnoError("socket(AF_UNIX, SOCK_DGRAM) for NOTIFY_SOCKET");
  struct timeval tv {};
  tv.tv_sec = kSendTimeoutMs / 1000;
  tv.tv_usec = (kSendTimeoutMs % 1000) * 1000;
  if (::setsockopt(sock.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
    return ErrnoError("setsockopt(NOTIFY_SOCKET, SO_SNDTIMEO)");
  }
  return Notifier(std::move(sock), address);
}

Result<void> Notifier::Send(std::string_view state, std::span<const int> fds) const {
  if (fds.size() > kMaxFdsPerMessage) {
    return PlainError("sd_notify: " + std::to_string(fds.size()) + " fds in one message (at most " +
                      std::to_string(kMaxFdsPerMessage) + ")");
  }
  struct iovec iov {};
  iov.iov_base = const_cast<char*>(state.data());
  iov.iov_len = state.size();
  struct msghdr msg {};
  msg.msg_name = const_cast<sockaddr_un*>(&address_.addr);
  msg.msg_namelen = address_.len;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock_.get(), &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    const std::string first(state.substr(0, state.find('\n')));
    return ErrnoError("sendmsg(NOTIFY_SOCKET, \"" + first + "\")");
  }
  return Ok();
}

Result<void> Notifier::StoreFd(std::string_view name, int fd) const {
  if (!IsValidFdName(name))
    return PlainError("fd store: \"" + std::string(name) + "\" is no fd name");
  const int fds[] = {fd};
  return Send("FDSTORE=1\nFDNAME=" + std::string(name) + "\nFDPOLL=0", fds);
}

Result<void> Notifier::RemoveFd(std::string_view name) const {
  if (!IsValidFdName(name))
    return PlainError("fd store: \"" + std::string(name) + "\" is no fd name");
  return Send("FDSTOREREMOVE=1\nFDNAME=" + std::string(name));
}

bool IsValidFdName(std::string_view name) {
  if (name.size() > kMaxFdNameBytes) return false;
  for (const char c : name) {
    if (c < 0x20 || c > 0x7e || c == ':') return false;
  }
  return true;
}

Result<std::vector<ListenedFd>> ParseListenFds(const char* listen_pid, const char* listen_fds,
                                               const char* listen_fdnames, pid_t self) {
  std::vector<ListenedFd> out;
  if (listen_pid == nullptr) return out;
  const auto pid = ParseDecimal(listen_pid);
  if (!pid || *pid == 0) {
    return PlainError("LISTEN_PID=\"" + std::string(listen_pid) + "\" is not a process id");
  }
  if (*pid != static_cast<uint64_t>(self)) return out;  // meant for another process
  if (listen_fds == nullptr) return out;
  const auto n = ParseDecimal(listen_fds);
  if (!n) return PlainError("LISTEN_FDS=\"" + std::string(listen_fds) + "\" is not a number");
  if (*n > kMaxListenFds) {
    return PlainError("LISTEN_FDS=" + std::string(listen_fds) + " is more than " +
                      std::to_string(kMaxListenFds) + " descriptors");
  }
  std::vector<std::string> names;
  if (listen_fdnames == nullptr) {
    names.assign(*n, "unknown");
  } else {
    const std::string_view all(listen_fdnames);
    size_t start = 0;
    while (names.size() <= *n) {
      const size_t colon = all.find(':', start);
      const std::string_view one = all.substr(
          start, colon == std::string_view::npos ? std::string_view::npos : colon - start);
      if (!IsValidFdName(one)) {
        return PlainError("LISTEN_FDNAMES: name " + std::to_string(names.size() + 1) +
                          " is not a valid fd name");
      }
      names.emplace_back(one);
      if (colon == std::string_view::npos) break;
      start = colon + 1;
    }
    // systemd sets LISTEN_FDNAMES="" with no fds; one empty name otherwise stands for one fd.
    if (*n == 0 && names.size() == 1 && names[0].empty()) names.clear();
    if (names.size() != *n) {
      return PlainError("LISTEN_FDNAMES names " +
                        std::string(names.size() > *n ? "more" : "fewer") +
                        " descriptors than LISTEN_FDS=" + std::to_string(*n));
    }
  }
  out.reserve(*n);
  for (size_t i = 0; i < *n; ++i) {
    out.push_back({kListenFdsStart + static_cast<int>(i), std::move(names[i])});
  }
  return out;
}

Result<std::vector<ListenedFd>> TakeListenFds() {
  auto fds = ParseListenFds(std::getenv("LISTEN_PID"), std::getenv("LISTEN_FDS"),
                            std::getenv("LISTEN_FDNAMES"), ::getpid());
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (!fds) return fds;
  for (const auto& f : *fds) {
    const int flags = ::fcntl(f.fd, F_GETFD);
    if (flags < 0) return ErrnoError("fcntl(LISTEN_FDS fd " + std::to_string(f.fd) + ", F_GETFD)");
    if (::fcntl(f.fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
      return ErrnoError("fcntl(LISTEN_FDS fd " + std::to_string(f.fd) + ", FD_CLOEXEC)");
    }
  }
  return fds;
}

std::string_view ToString(FdKind kind) {
  switch (kind) {
    case FdKind::kPidfd:
      return "pidfd";
    case FdKind::kStatus:
      return "status";
    case FdKind::kIn:
      return "in";
    case FdKind::kOut:
      return "out";
    case FdKind::kErr:
      return "err";
    case FdKind::kPty:
      return "pty";
    case FdKind::kStage:
      return "stage";
    case FdKind::kPtyQueue:
      return "ptyq";
  }
  return "?";
}

std::string FdName(std::string_view session_id, FdKind kind) {
  std::string name(session_id);
  name += '.';
  name += ToString(kind);
  return name;
}

std::optional<ParsedFdName> ParseFdName(std::string_view name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string_view id = name.substr(0, dot);
  const std::string_view kind = name.substr(dot + 1);
  if (!common::IsValidSessionId(id)) return std::nullopt;
  for (const FdKind k : kKinds) {
    if (kind == ToString(k)) return ParsedFdName{std::string(id), k};
  }
  return std::nullopt;
}

}  // namespace mp::supervisor::sd

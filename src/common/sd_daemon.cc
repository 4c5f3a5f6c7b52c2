#include "common/sd_daemon.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

namespace mp::sd {
namespace {

// A decimal number as systemd writes them: digits only (no sign, no blank), and one that fits
// in 64 bits.
std::optional<uint64_t> ParseDecimal(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// A variable's value as it came, cut short and with control bytes escaped: an error message,
// not a dump.
std::string Quoted(std::string_view value) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (const char c : value.substr(0, 40)) {
    if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      out += "\\x";
      out += kHex[static_cast<unsigned char>(c) >> 4];
      out += kHex[static_cast<unsigned char>(c) & 0xf];
    }
  }
  if (value.size() > 40) out += "...";
  return out + "\"";
}

}  // namespace

Result<NotifyAddress> ParseNotifyAddress(std::string_view value) {
  NotifyAddress a;
  a.addr.sun_family = AF_UNIX;
  if (value.empty()) return PlainError("NOTIFY_SOCKET is empty");
  if (value.front() != '/' && value.front() != '@') {
    // systemd ≥ 253 also speaks "vsock:CID:PORT"; our daemons run on the host, never in a VM
    // that reports to its host's manager.
    return PlainError("NOTIFY_SOCKET " + Quoted(value) +
                      " is neither an absolute path nor an abstract name (@...)");
  }
  if (value.size() > sizeof a.addr.sun_path - (value.front() == '/' ? 1 : 0) || value.size() < 2) {
    return PlainError("NOTIFY_SOCKET " + Quoted(value) + " has a bad length (1.." +
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
  if (!IsValidFdName(name)) return PlainError("fd store: " + Quoted(name) + " is no fd name");
  const int fds[] = {fd};
  return Send("FDSTORE=1\nFDNAME=" + std::string(name) + "\nFDPOLL=0", fds);
}

Result<void> Notifier::RemoveFd(std::string_view name) const {
  if (!IsValidFdName(name)) return PlainError("fd store: " + Quoted(name) + " is no fd name");
  return Send("FDSTOREREMOVE=1\nFDNAME=" + std::string(name));
}

bool IsValidFdName(std::string_view name) {
  if (name.size() > kMaxFdNameBytes) return false;
  for (const char c : name) {
    if (c < 0x20 || c > 0x7e || c == ':') return false;
  }
  return true;
}

Result<ListenedFds> ParseListenFds(const char* listen_pid, const char* listen_fds,
                                   const char* listen_fdnames, pid_t self, size_t max_fds) {
  ListenedFds out;
  if (listen_pid == nullptr) {
    // sd_listen_fds(3) takes nothing without LISTEN_PID: whatever set LISTEN_FDS did not mean us.
    if (listen_fds != nullptr) {
      out.ignored = "LISTEN_FDS=" + Quoted(listen_fds) + " is set without LISTEN_PID";
    }
    return out;
  }
  const auto pid = ParseDecimal(listen_pid);
  if (!pid || *pid == 0 || *pid > static_cast<uint64_t>(std::numeric_limits<pid_t>::max())) {
    return PlainError("LISTEN_PID=" + Quoted(listen_pid) + " is not a process id");
  }
  if (*pid != static_cast<uint64_t>(self)) {
    // Inherited from a parent that was socket-activated itself: its fds, not ours.
    if (listen_fds == nullptr) return out;
    out.ignored = "LISTEN_PID=" + std::to_string(*pid) + " names another process (this is " +
                  std::to_string(self) + ")";
    return out;
  }
  if (listen_fds == nullptr) return out;
  const auto n = ParseDecimal(listen_fds);
  if (!n) return PlainError("LISTEN_FDS=" + Quoted(listen_fds) + " is not a number");
  if (*n > max_fds) {
    return PlainError("LISTEN_FDS=" + std::to_string(*n) + " is more than the " +
                      std::to_string(max_fds) + " fds this program takes");
  }
  std::vector<std::string> names;
  if (listen_fdnames == nullptr) {
    names.assign(*n, "unknown");  // as sd_listen_fds_with_names(3) names them
  } else {
    const std::string_view all(listen_fdnames);
    size_t start = 0;
    // At most n + 1 names are split off: one more than n is enough to know there are too many.
    while (names.size() <= *n) {
      const size_t colon = all.find(':', start);
      const std::string_view one = all.substr(
          start, colon == std::string_view::npos ? std::string_view::npos : colon - start);
      if (!IsValidFdName(one)) {
        return PlainError("LISTEN_FDNAMES: name " + std::to_string(names.size() + 1) +
                          " is not a valid fd name (printable ASCII, at most " +
                          std::to_string(kMaxFdNameBytes) + " bytes)");
      }
      names.emplace_back(one);
      if (colon == std::string_view::npos) break;
      start = colon + 1;
    }
    // With no fds systemd sets LISTEN_FDNAMES to "": one empty name that names nothing.
    if (*n == 0 && names.size() == 1 && names[0].empty()) names.clear();
    if (names.size() != *n) {
      return PlainError("LISTEN_FDNAMES names " +
                        std::string(names.size() > *n ? "more" : "fewer") +
                        " fds than LISTEN_FDS=" + std::to_string(*n));
    }
  }
  out.fds.reserve(*n);
  for (size_t i = 0; i < *n; ++i) {
    out.fds.push_back({kListenFdsStart + static_cast<int>(i), std::move(names[i])});
  }
  return out;
}

Result<ListenedFds> TakeListenFds(size_t max_fds) {
  auto parsed = ParseListenFds(std::getenv("LISTEN_PID"), std::getenv("LISTEN_FDS"),
                               std::getenv("LISTEN_FDNAMES"), ::getpid(), max_fds);
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (!parsed) return parsed;
  for (const auto& f : parsed->fds) {
    const int flags = ::fcntl(f.fd, F_GETFD);
    if (flags < 0 && errno == EBADF) {
      return ErrnoError(EBADF, "fd " + std::to_string(f.fd) + " is not open (LISTEN_FDS=" +
                                   std::to_string(parsed->fds.size()) + ")");
    }
    if (flags < 0 || ::fcntl(f.fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
      return ErrnoError("fcntl(LISTEN_FDS fd " + std::to_string(f.fd) + ", FD_CLOEXEC)");
    }
  }
  return parsed;
}

}  // namespace mp::sd

#include "http/listen_fds.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

namespace mp::http {
namespace {

// A plain decimal number as systemd writes them: digits only (no sign, no blank), at most 10 of
// them (a pid or an fd count; anything longer is no such thing).
std::optional<uint64_t> ParseDecimal(std::string_view s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

std::string Quoted(const char* value) {
  // The value as it came, cut short: an error message, not a dump.
  std::string v(value);
  if (v.size() > 40) v = v.substr(0, 40) + "...";
  std::string out = "\"";
  for (const char c : v) {
    if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[static_cast<unsigned char>(c) >> 4];
      out += kHex[static_cast<unsigned char>(c) & 0xf];
    }
  }
  return out + "\"";
}

int IntOption(int fd, int option, int* value) {
  socklen_t len = sizeof *value;
  return ::getsockopt(fd, SOL_SOCKET, option, value, &len);
}

}  // namespace

bool IsValidListenFdName(std::string_view name) {
  if (name.size() > kMaxListenFdNameBytes) return false;
  for (const char c : name) {
    if (c < 0x20 || c > 0x7e || c == ':') return false;
  }
  return true;
}

Result<ListenFds> ParseListenFds(const char* listen_pid, const char* listen_fds,
                                 const char* listen_fdnames, pid_t self) {
  ListenFds out;
  if (listen_pid == nullptr) {
    // sd_listen_fds(3) takes nothing without LISTEN_PID: whatever set LISTEN_FDS did not mean us.
    if (listen_fds != nullptr) {
      out.ignored = "LISTEN_FDS=" + Quoted(listen_fds) + " is set without LISTEN_PID";
    }
    return out;
  }
  const auto pid = ParseDecimal(listen_pid);
  if (!pid || *pid == 0) {
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
  if (*n > kMaxListenFds) {
    return PlainError("LISTEN_FDS=" + std::to_string(*n) + " is more than the " +
                      std::to_string(kMaxListenFds) + " sockets monkeyproof-api takes");
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
      if (!IsValidListenFdName(one)) {
        return PlainError("LISTEN_FDNAMES: name " + std::to_string(names.size() + 1) +
                          " is not a valid fd name (printable ASCII, at most " +
                          std::to_string(kMaxListenFdNameBytes) + " bytes)");
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
                        " sockets than LISTEN_FDS=" + std::to_string(*n));
    }
  }
  out.fds.reserve(*n);
  for (size_t i = 0; i < *n; ++i) {
    out.fds.push_back({kListenFdsStart + static_cast<int>(i), std::move(names[i])});
  }
  return out;
}

Result<void> CheckListeningUnixStream(int fd) {
  const std::string name = "fd " + std::to_string(fd);
  int domain = 0;
  if (IntOption(fd, SO_DOMAIN, &domain) != 0) {
    const int err = errno;
    if (err == ENOTSOCK) return ErrnoError(err, name + " is not a socket");
    if (err == EBADF) return ErrnoError(err, name + " is not open");
    return ErrnoError(err, "getsockopt(" + name + ", SO_DOMAIN)");
  }
  if (domain != AF_UNIX) {
    const char* family = domain == AF_INET      ? "AF_INET"
                         : domain == AF_INET6   ? "AF_INET6"
                         : domain == AF_NETLINK ? "AF_NETLINK"
                                                : nullptr;
    return PlainError(
        name + " is an " +
        (family != nullptr ? std::string(family) : "address family " + std::to_string(domain)) +
        " socket, not a Unix one: the API takes only ListenStream=/path sockets "
        "from systemd (TCP addresses belong in api.conf's listen)");
  }
  int type = 0;
  if (IntOption(fd, SO_TYPE, &type) != 0) {
    return ErrnoError("getsockopt(" + name + ", SO_TYPE)");
  }
  if (type != SOCK_STREAM) {
    return PlainError(name + " is a Unix " +
                      std::string(type == SOCK_DGRAM       ? "datagram"
                                  : type == SOCK_SEQPACKET ? "seqpacket"
                                                           : "non-stream") +
                      " socket, not a stream one (ListenStream=, not ListenDatagram= or "
                      "ListenSequentialPacket=)");
  }
  int listening = 0;
  if (IntOption(fd, SO_ACCEPTCONN, &listening) != 0) {
    return ErrnoError("getsockopt(" + name + ", SO_ACCEPTCONN)");
  }
  if (listening == 0) {
    return PlainError(name +
                      " is a Unix stream socket that is not listening (a connection: the socket "
                      "unit must have Accept=no, the default)");
  }
  return Ok();
}

namespace {

// The socket's own address, as a log names it.
std::string SocketPath(int fd) {
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {};
  const size_t base = offsetof(sockaddr_un, sun_path);
  if (len <= base) return {};  // unnamed
  const size_t n = std::min<size_t>(len - base, sizeof addr.sun_path);
  if (addr.sun_path[0] == '\0') return "@" + std::string(addr.sun_path + 1, n - 1);
  return std::string(addr.sun_path, ::strnlen(addr.sun_path, n));
}

}  // namespace

Result<InheritedUnixSockets> TakeInheritedUnixSockets() {
  auto parsed = ParseListenFds(std::getenv("LISTEN_PID"), std::getenv("LISTEN_FDS"),
                               std::getenv("LISTEN_FDNAMES"), ::getpid());
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (!parsed) return std::move(parsed).error().Wrap("the sockets systemd passed");
  for (const ListenFd& f : parsed->fds) {
    if (auto ok = CheckListeningUnixStream(f.fd); !ok) {
      return std::move(ok).error().Wrap("the sockets systemd passed (LISTEN_FDS), \"" + f.name +
                                        "\"");
    }
  }
  InheritedUnixSockets out;
  out.ignored = std::move(parsed->ignored);
  for (ListenFd& f : parsed->fds) {
    const int flags = ::fcntl(f.fd, F_GETFD);
    if (flags < 0 || ::fcntl(f.fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
      const int err = errno;
      for (auto& s : out.sockets) (void)s.fd.Release();  // see the header: none owned on error
      return ErrnoError(err, "fcntl(fd " + std::to_string(f.fd) + ", FD_CLOEXEC)");
    }
    InheritedUnixSocket s;
    s.fd = UniqueFd(f.fd);
    s.path = SocketPath(f.fd);
    s.name = std::move(f.name);
    out.sockets.push_back(std::move(s));
  }
  return out;
}

}  // namespace mp::http

#include "http/listen_fds.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>

#include "common/sd_daemon.h"

namespace mp::http {
namespace {

constexpr std::string_view kStoredPrefix = "api-tcp-";

int IntOption(int fd, int level, int option, int* value) {
  socklen_t len = sizeof *value;
  return ::getsockopt(fd, level, option, value, &len);
}

// The socket's own address, as a log names it.
std::string UnixSocketPath(int fd) {
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {};
  const size_t base = offsetof(sockaddr_un, sun_path);
  if (len <= base) return {};  // unnamed
  const size_t n = std::min<size_t>(len - base, sizeof addr.sun_path);
  if (addr.sun_path[0] == '\0') return "@" + std::string(addr.sun_path + 1, n - 1);
  return std::string(addr.sun_path, ::strnlen(addr.sun_path, n));
}

Result<boost::asio::ip::tcp::endpoint> TcpEndpoint(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ErrnoError("getsockname(fd " + std::to_string(fd) + ")");
  }
  boost::asio::ip::tcp::endpoint endpoint;
  if (len > endpoint.capacity()) {
    return PlainError("fd " + std::to_string(fd) + ": an address of " + std::to_string(len) +
                      " bytes");
  }
  std::memcpy(endpoint.data(), &addr, len);
  endpoint.resize(len);
  return endpoint;
}

}  // namespace

Result<int> CheckListeningSocket(int fd) {
  const std::string name = "fd " + std::to_string(fd);
  int domain = 0;
  if (IntOption(fd, SOL_SOCKET, SO_DOMAIN, &domain) != 0) {
    const int err = errno;
    if (err == ENOTSOCK) return ErrnoError(err, name + " is not a socket");
    if (err == EBADF) return ErrnoError(err, name + " is not open");
    return ErrnoError(err, "getsockopt(" + name + ", SO_DOMAIN)");
  }
  if (domain != AF_UNIX && domain != AF_INET && domain != AF_INET6) {
    return PlainError(name + " is a socket of address family " + std::to_string(domain) +
                      ", neither Unix nor IP: the API takes ListenStream=/path and "
                      "ListenStream=ADDRESS:PORT sockets from systemd");
  }
  const std::string what = domain == AF_UNIX ? "Unix" : "IP";
  int type = 0;
  if (IntOption(fd, SOL_SOCKET, SO_TYPE, &type) != 0) {
    return ErrnoError("getsockopt(" + name + ", SO_TYPE)");
  }
  if (type != SOCK_STREAM) {
    return PlainError(name + " is " + (domain == AF_UNIX ? "a " : "an ") + what + " " +
                      std::string(type == SOCK_DGRAM       ? "datagram"
                                  : type == SOCK_SEQPACKET ? "seqpacket"
                                                           : "non-stream") +
                      " socket, not a stream one (ListenStream=, not ListenDatagram= or "
                      "ListenSequentialPacket=)");
  }
  if (domain != AF_UNIX) {
    int protocol = 0;
    if (IntOption(fd, SOL_SOCKET, SO_PROTOCOL, &protocol) != 0) {
      return ErrnoError("getsockopt(" + name + ", SO_PROTOCOL)");
    }
    if (protocol != IPPROTO_TCP) {
      return PlainError(name + " is an IP stream socket of protocol " + std::to_string(protocol) +
                        ", not TCP (no SocketProtocol= in the socket unit)");
    }
  }
  int listening = 0;
  if (IntOption(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening) != 0) {
    return ErrnoError("getsockopt(" + name + ", SO_ACCEPTCONN)");
  }
  if (listening == 0) {
    return PlainError(name + " is " + (domain == AF_UNIX ? "a " : "an ") + what +
                      " stream socket that is not listening (a connection: the socket unit must "
                      "have Accept=no, the default)");
  }
  return domain;
}

bool InheritedTcpSocket::stored() const { return name.starts_with(kStoredPrefix); }

std::string StoredListenerName(const boost::asio::ip::tcp::endpoint& endpoint) {
  std::string address = endpoint.address().to_string();
  std::replace(address.begin(), address.end(), ':', '_');
  return std::string(kStoredPrefix) + address + "-" + std::to_string(endpoint.port());
}

Result<InheritedSockets> TakeInheritedSockets() {
  auto parsed = sd::TakeListenFds(kMaxListenFds);
  if (!parsed) return std::move(parsed).error().Wrap("the sockets systemd passed");
  std::vector<int> families;
  for (const sd::ListenedFd& f : parsed->fds) {
    auto family = CheckListeningSocket(f.fd);
    if (!family) {
      return std::move(family).error().Wrap("the sockets systemd passed (LISTEN_FDS), \"" + f.name +
                                            "\"");
    }
    families.push_back(*family);
  }
  InheritedSockets out;
  out.ignored = std::move(parsed->ignored);
  for (size_t i = 0; i < parsed->fds.size(); ++i) {
    sd::ListenedFd& f = parsed->fds[i];
    if (families[i] == AF_UNIX) {
      InheritedUnixSocket s;
      s.path = UnixSocketPath(f.fd);
      s.fd = UniqueFd(f.fd);
      s.name = std::move(f.name);
      out.unix_sockets.push_back(std::move(s));
      continue;
    }
    auto endpoint = TcpEndpoint(f.fd);
    if (!endpoint) {
      // None owned on an error (see the header): what was taken so far is let go again.
      for (auto& s : out.unix_sockets) (void)s.fd.Release();
      for (auto& s : out.tcp_sockets) (void)s.fd.Release();
      return std::move(endpoint).error().Wrap("the sockets systemd passed, \"" + f.name + "\"");
    }
    InheritedTcpSocket s;
    s.endpoint = *endpoint;
    s.fd = UniqueFd(f.fd);
    s.name = std::move(f.name);
    out.tcp_sockets.push_back(std::move(s));
  }
  return out;
}

}  // namespace mp::http

// The listening sockets monkeyproof-api takes from systemd at start (LISTEN_FDS, read by
// common/sd_daemon.h): Unix stream sockets of the package's monkeyproof-api.socket, served as
// listen_unix is (http/unix_listener.h), and TCP sockets, served for the listen or tls_listen
// address they are bound to (http/server.h). TCP sockets come from a socket unit the operator
// gave ListenStream=ADDRESS:PORT, or from systemd's fd store, where the API keeps each TCP
// listener it bound itself (StoredListenerName): a `systemctl restart` or a crash then never
// frees the port, so no other local user can take it in between (docs/deploy.md, section 4).
// Anything else passed is a start error. Runs in monkeyproof-api at start, before any other
// thread (the variables are unset).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::http {

// The most fds the API takes: a socket unit for it has one ListenStream= line, or a few, and
// the store holds one per TCP listener. More is an error, not an allocation.
inline constexpr size_t kMaxListenFds = 64;

// `fd` is a listening stream socket the API can serve: Unix (SO_DOMAIN AF_UNIX) or TCP
// (AF_INET or AF_INET6 with SO_PROTOCOL IPPROTO_TCP), SO_TYPE SOCK_STREAM, SO_ACCEPTCONN. Its
// family; the error says what it is instead, and which socket unit setting gives that.
Result<int> CheckListeningSocket(int fd);

// A Unix socket systemd passed, ready to be served (UnixListener::Adopt).
struct InheritedUnixSocket {
  UniqueFd fd;
  std::string name;  // its LISTEN_FDNAMES entry
  std::string path;  // getsockname: the file ("/run/monkeyproof-api/api.sock"), "@name" for an
                     // abstract address, empty when unnamed
};

// A listening TCP socket systemd passed (Listener::Adopt).
struct InheritedTcpSocket {
  UniqueFd fd;
  std::string name;  // its LISTEN_FDNAMES entry: a socket unit's, or StoredListenerName's
  boost::asio::ip::tcp::endpoint endpoint;  // getsockname
  // Named as the API names what it keeps in the store (a socket unit's fds are not).
  [[nodiscard]] bool stored() const;
};

// The name under which the API keeps the TCP listener bound to `endpoint` in systemd's fd
// store: "api-tcp-127.0.0.1-3200", "api-tcp-__1-3200" for [::1]:3200 (':' may not appear).
std::string StoredListenerName(const boost::asio::ip::tcp::endpoint& endpoint);

// Every fd systemd passed, sorted by kind. On an error no fd is owned (they stay open:
// systemd's copies are what matter). `ignored` as sd::ListenedFds'.
struct InheritedSockets {
  std::vector<InheritedUnixSocket> unix_sockets;
  std::vector<InheritedTcpSocket> tcp_sockets;
  std::string ignored;
};
// sd::TakeListenFds, then each fd must be a listening Unix stream socket or a listening TCP
// socket (IPv4 or IPv6); the error names the fd, what it is and what to change.
Result<InheritedSockets> TakeInheritedSockets();

}  // namespace mp::http

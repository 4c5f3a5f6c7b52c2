// monkeyproof-api as an object: the context, the listeners (plain and TLS) and the supervisor
// link on one io_context. main() and the in-process tests (tests/unit/http_server_test.cc) both
// drive it. Not thread-safe: Run() on one thread; Stop() may be called from a signal handler's
// asio::signal_set or another thread (it posts); ReloadTls() runs on the io_context thread.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/result.h"
#include "http/api_config.h"
#include "http/api_context.h"
#include "http/auth.h"
#include "http/listen_fds.h"

namespace mp::http {

class Listener;
class UnixListener;
class TlsContextSlot;

class Server {
 public:
  Server(ApiConfig config, TokenSet tokens);
  ~Server();
  // Unix sockets systemd passed (TakeInheritedUnixSockets), to be served from Start() on. With
  // any, listen_unix is not bound (a warning names both): the socket unit decides the socket's
  // path, mode and group.
  void InheritUnixSockets(std::vector<InheritedUnixSocket> sockets);
  // Reads the TLS files, binds every listen and tls_listen address and listen_unix (an error
  // names the first that failed), takes the inherited Unix sockets and starts the link.
  Result<void> Start();
  // Reads the TLS files again (SIGHUP): new handshakes use the new context, live connections
  // keep theirs. On an error the previous context stays, and the error says why.
  Result<void> ReloadTls();
  // Runs until Stop().
  void Run();
  void Stop();
  // Where each listener ended up (port 0 in tests picks a free port): listen's, then
  // tls_listen's.
  [[nodiscard]] std::vector<boost::asio::ip::tcp::endpoint> endpoints() const;
  [[nodiscard]] std::vector<boost::asio::ip::tcp::endpoint> tls_endpoints() const;
  // The Unix sockets served: listen_unix's, or the inherited ones, with where each came from
  // ("listen_unix", or its LISTEN_FDNAMES name).
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> unix_sockets() const;
  ApiContext& context() { return *ctx_; }
  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context io_{1};
  std::shared_ptr<ApiContext> ctx_;
  std::vector<std::shared_ptr<Listener>> listeners_;
  std::vector<std::shared_ptr<Listener>> tls_listeners_;
  // listen_unix's, or the inherited sockets' (paths and origins in unix_sockets_).
  std::vector<std::shared_ptr<UnixListener>> unix_listeners_;
  std::vector<std::pair<std::string, std::string>> unix_sockets_;
  std::vector<InheritedUnixSocket> inherited_;  // until Start
  std::shared_ptr<TlsContextSlot> tls_;         // null without tls_listen
};

}  // namespace mp::http

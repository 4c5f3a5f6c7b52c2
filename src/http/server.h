// monkeyproof-api as an object: the context, the listeners (plain and TLS) and the supervisor
// link on one io_context. main() and the in-process tests (tests/unit/http_server_test.cc) both
// drive it. Not thread-safe: Run() on one thread; Stop() may be called from a signal handler's
// asio::signal_set or another thread (it posts); ReloadTls() runs on the io_context thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/result.h"
#include "common/sd_daemon.h"
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
  // Sockets systemd passed (TakeInheritedSockets), to be served from Start() on. With a Unix
  // one, listen_unix is not bound (a warning names both): the socket unit decides the socket's
  // path, mode and group. A TCP one serves the listen or tls_listen address it is bound to.
  void Inherit(InheritedSockets sockets);
  // Under systemd with a file-descriptor store (the package's unit): each TCP listener Start()
  // binds itself is kept in the store (StoredListenerName), so that the next start of the API
  // takes it back (Inherit) and the port is never free in between; a stored listener that
  // api.conf no longer names is removed from the store. Failures are warnings.
  void KeepTcpListenersIn(sd::Notifier notifier);
  // Reads the TLS files, serves every listen and tls_listen address (with the passed socket
  // bound to it, else binding one) and listen_unix or the passed Unix sockets (an error names
  // the first that failed), and starts the link. A passed TCP socket that no address of
  // api.conf names is an error, unless it is one the API stored (then it is let go).
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
  InheritedSockets inherited_;  // until Start
  std::optional<sd::Notifier> notifier_;
  std::shared_ptr<TlsContextSlot> tls_;  // null without tls_listen
};

}  // namespace mp::http

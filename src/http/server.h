// monkeyproof-api as an object: the context, the listeners and the supervisor link on one
// io_context. main() and the in-process tests (tests/unit/http_server_test.cc) both drive it.
// Not thread-safe: Run() on one thread; Stop() may be called from a signal handler's
// asio::signal_set or another thread (it posts).
#pragma once

#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/result.h"
#include "http/api_config.h"
#include "http/api_context.h"
#include "http/auth.h"

namespace mp::http {

class Listener;

class Server {
 public:
  Server(ApiConfig config, TokenSet tokens);
  ~Server();
  // Binds every listen address (an error names the first that failed) and starts the link.
  Result<void> Start();
  // Runs until Stop().
  void Run();
  void Stop();
  // Where each listener ended up (port 0 in tests picks a free port).
  [[nodiscard]] std::vector<boost::asio::ip::tcp::endpoint> endpoints() const;
  ApiContext& context() { return *ctx_; }
  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context io_{1};
  std::shared_ptr<ApiContext> ctx_;
  std::vector<std::shared_ptr<Listener>> listeners_;
};

}  // namespace mp::http

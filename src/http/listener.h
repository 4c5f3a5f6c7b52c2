// Accepts TCP connections on one listen address of monkeyproof-api and starts an HttpSession
// for each, refusing connections beyond max_connections with a 503 and close. Runs on the
// io_context thread.
#pragma once

#include <memory>

#include <boost/asio/ip/tcp.hpp>

#include "common/result.h"
#include "http/api_context.h"

namespace mp::http {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // Binds and listens; the error names the address ("bind 127.0.0.1:3200: EADDRINUSE ...").
  static Result<std::shared_ptr<Listener>> Open(ApiContext& ctx, const ListenAddress& address);
  void Run() { DoAccept(); }
  [[nodiscard]] boost::asio::ip::tcp::endpoint local_endpoint() const;

 private:
  Listener(ApiContext& ctx, boost::asio::ip::tcp::acceptor acceptor)
      : ctx_(ctx), keep_(ctx.shared_from_this()), acceptor_(std::move(acceptor)) {}
  void DoAccept();
  void OnAccept(boost::system::error_code ec, boost::asio::ip::tcp::socket socket);

  ApiContext& ctx_;
  std::shared_ptr<ApiContext> keep_;
  boost::asio::ip::tcp::acceptor acceptor_;
};

}  // namespace mp::http

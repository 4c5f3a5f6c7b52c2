// Accepts TCP connections on one listen address of monkeyproof-api and starts an HttpSession
// for each, plain or over TLS (the listener's TlsContextSlot). At max_connections the oldest
// unauthenticated connection is evicted to admit the new one (connection_limits.h); only when
// all have authenticated is the new one refused with a 503 and close. Runs on the io_context
// thread.
#pragma once

#include <memory>

#include <boost/asio/ip/tcp.hpp>

#include "common/result.h"
#include "common/unique_fd.h"
#include "http/api_context.h"
#include "http/tls.h"

namespace mp::http {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // Binds and listens; the error names the address ("bind 127.0.0.1:3200: EADDRINUSE ...").
  // With `tls`, every connection starts with a TLS handshake on tls->current().
  static Result<std::shared_ptr<Listener>> Open(ApiContext& ctx, const ListenAddress& address,
                                                std::shared_ptr<TlsContextSlot> tls = nullptr);
  // Serves a listening TCP socket systemd passed (http/listen_fds.h), as Open's would be.
  static Result<std::shared_ptr<Listener>> Adopt(ApiContext& ctx, UniqueFd fd,
                                                 const boost::asio::ip::tcp::endpoint& endpoint,
                                                 std::shared_ptr<TlsContextSlot> tls = nullptr);
  void Run() { DoAccept(); }
  [[nodiscard]] boost::asio::ip::tcp::endpoint local_endpoint() const;
  // The listening socket (for systemd's fd store: it keeps a copy).
  int native_handle();

 private:
  Listener(ApiContext& ctx, boost::asio::ip::tcp::acceptor acceptor,
           std::shared_ptr<TlsContextSlot> tls)
      : ctx_(ctx),
        keep_(ctx.shared_from_this()),
        acceptor_(std::move(acceptor)),
        tls_(std::move(tls)) {}
  void DoAccept();
  void OnAccept(boost::system::error_code ec, boost::asio::ip::tcp::socket socket);

  ApiContext& ctx_;
  std::shared_ptr<ApiContext> keep_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<TlsContextSlot> tls_;  // null: plain HTTP
};

}  // namespace mp::http

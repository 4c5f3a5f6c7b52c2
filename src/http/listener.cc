#include "http/listener.h"

#include <utility>

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>

#include "common/log.h"
#include "http/http_session.h"

namespace mp::http {
namespace asio = boost::asio;
using asio::ip::tcp;

Result<std::shared_ptr<Listener>> Listener::Open(ApiContext& ctx, const ListenAddress& address,
                                                 std::shared_ptr<TlsContextSlot> tls) {
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(address.host, ec);
  const std::string name =
      (address.host.find(':') != std::string::npos ? "[" + address.host + "]" : address.host) +
      ":" + std::to_string(address.port);
  if (ec) return PlainError("listen " + name + ": bad address: " + ec.message());
  const tcp::endpoint endpoint(ip, address.port);
  tcp::acceptor acceptor(ctx.io);
  auto fail = [&](const char* step) {
    return Result<std::shared_ptr<Listener>>(
        ErrnoError(ec.value(), std::string(step) + " " + name));
  };
  acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail("socket");
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return fail("setsockopt SO_REUSEADDR");
  if (ip.is_v6()) {
    acceptor.set_option(asio::ip::v6_only(true), ec);
    if (ec) return fail("setsockopt IPV6_V6ONLY");
  }
  acceptor.bind(endpoint, ec);
  if (ec) return fail("bind");
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen");
  return std::shared_ptr<Listener>(new Listener(ctx, std::move(acceptor), std::move(tls)));
}

Result<std::shared_ptr<Listener>> Listener::Adopt(ApiContext& ctx, UniqueFd fd,
                                                  const tcp::endpoint& endpoint,
                                                  std::shared_ptr<TlsContextSlot> tls) {
  tcp::acceptor acceptor(ctx.io);
  boost::system::error_code ec;
  acceptor.assign(endpoint.protocol(), fd.get(), ec);
  if (ec) {
    return ErrnoError(ec.value(), "serving the socket systemd passed for " +
                                      endpoint.address().to_string() + " port " +
                                      std::to_string(endpoint.port()));
  }
  (void)fd.Release();  // the acceptor's now
  return std::shared_ptr<Listener>(new Listener(ctx, std::move(acceptor), std::move(tls)));
}

int Listener::native_handle() { return acceptor_.native_handle(); }

tcp::endpoint Listener::local_endpoint() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec);
}

void Listener::DoAccept() {
  acceptor_.async_accept(ctx_.io,
                         boost::beast::bind_front_handler(&Listener::OnAccept, shared_from_this()));
}

void Listener::OnAccept(boost::system::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted) return;
  if (ec) {
    // EMFILE and friends: log, wait a little, go on accepting.
    common::Log(common::LogLevel::kError, "accept: " + ec.message());
    auto timer = std::make_shared<asio::steady_timer>(ctx_.io, std::chrono::milliseconds(100));
    timer->async_wait(
        [self = shared_from_this(), timer](boost::system::error_code) { self->DoAccept(); });
    return;
  }
  // At the global cap the oldest connection that has not authenticated makes room (it closes
  // now; its count goes when its session does): idle connections cannot keep a client out.
  // Only when every open connection has authenticated is the new one refused.
  if (ctx_.connections >= ctx_.config.max_connections && !ctx_.connection_limits.EvictOldest()) {
    // Over the cap: a short answer and close, without reading the request.
    static const std::string kBusy = [] {
      const std::string body =
          R"({"error":"too many connections; retry later","code":"unavailable"})";
      return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
             "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
             std::to_string(body.size()) + "\r\n\r\n" + body;
    }();
    if (tls_) {
      // A TLS client cannot read a plain-text answer: close at once (it sees the handshake
      // fail, and retries as it would after a 503).
      boost::system::error_code ignored;
      socket.close(ignored);
      DoAccept();
      return;
    }
    auto s = std::make_shared<tcp::socket>(std::move(socket));
    asio::async_write(*s, asio::buffer(kBusy.data(), kBusy.size()),
                      [s](boost::system::error_code, size_t) {
                        boost::system::error_code ignored;
                        s->shutdown(tcp::socket::shutdown_both, ignored);
                      });
  } else {
    ++ctx_.connections;
    // Responses and WebSocket messages are each written whole, but often two in a row (the
    // 101 then the first message, the last output then `exit`): with Nagle the second waits
    // for the client's delayed ACK, up to 40 ms on Linux. Failure only costs that latency.
    boost::system::error_code nodelay_ec;
    socket.set_option(tcp::no_delay(true), nodelay_ec);
    boost::beast::tcp_stream tcp(std::move(socket));
    auto stream =
        tls_ ? ClientStream(std::move(tcp), tls_->current()) : ClientStream(std::move(tcp));
    std::make_shared<HttpSession>(ctx_, std::move(stream))->Run();
  }
  DoAccept();
}

}  // namespace mp::http

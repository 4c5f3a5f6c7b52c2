// The byte stream of one client connection of monkeyproof-api: plain TCP, or TLS over TCP when
// the listener has a TLS context (http/tls.h). HttpSession and WsSession read and write through
// it without knowing which: it is an AsyncStream for Beast's HTTP and WebSocket algorithms,
// its next_layer() is the TCP stream (deadlines, the peer's address), and websocket::stream
// tears it down through the async_teardown below. Runs on the io_context thread; not
// thread-safe, like the streams it wraps.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/teardown.hpp>

namespace mp::http {

class ClientStream {
 public:
  using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;
  using executor_type = boost::beast::tcp_stream::executor_type;

  // Plain TCP.
  explicit ClientStream(boost::beast::tcp_stream&& tcp) : stream_(std::move(tcp)) {}
  // TLS with `tls` (kept alive as long as the connection: a reload makes a new context for
  // new connections while this one goes on with the one it started with).
  ClientStream(boost::beast::tcp_stream&& tcp, std::shared_ptr<boost::asio::ssl::context> tls)
      : stream_(std::in_place_type<TlsStream>, std::move(tcp), *tls),
        tls_context_(std::move(tls)) {}

  [[nodiscard]] bool is_tls() const { return std::holds_alternative<TlsStream>(stream_); }
  // Only when is_tls().
  TlsStream& tls() { return std::get<TlsStream>(stream_); }

  executor_type get_executor() { return next_layer().get_executor(); }
  // The TCP stream (under TLS, if any): deadlines, the socket, the peer's address.
  boost::beast::tcp_stream& next_layer() {
    if (auto* tls = std::get_if<TlsStream>(&stream_)) return tls->next_layer();
    return std::get<boost::beast::tcp_stream>(stream_);
  }

  // The principal of a verified client certificate (mTLS, docs/api.md "Transport"): set once
  // the TLS handshake has verified one, for the connection's lifetime; nullopt otherwise.
  [[nodiscard]] const std::optional<std::string>& client_principal() const {
    return client_principal_;
  }
  void set_client_principal(std::optional<std::string> principal) {
    client_principal_ = std::move(principal);
  }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    std::visit([&](auto& s) { s.async_read_some(buffers, std::forward<Handler>(handler)); },
               stream_);
  }
  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    std::visit([&](auto& s) { s.async_write_some(buffers, std::forward<Handler>(handler)); },
               stream_);
  }

  // Ends our sending side and calls done(): plain TCP shuts its sending half at once; TLS sends
  // close_notify and waits for the peer's, at most `deadline`, then shuts TCP down.
  template <class Done>
  void AsyncShutdownSend(std::chrono::milliseconds deadline, Done done) {
    if (auto* tls = std::get_if<TlsStream>(&stream_)) {
      tls->next_layer().expires_after(deadline);
      tls->async_shutdown([this, done = std::move(done)](boost::system::error_code) mutable {
        ShutdownTcpSend();
        done();
      });
      return;
    }
    ShutdownTcpSend();
    done();
  }

  // WebSocket closing handshake: Beast's teardown of the stream underneath.
  template <class Handler>
  friend void async_teardown(boost::beast::role_type role, ClientStream& s, Handler&& handler) {
    using boost::beast::websocket::async_teardown;
    std::visit([&](auto& stream) { async_teardown(role, stream, std::forward<Handler>(handler)); },
               s.stream_);
  }
  friend void teardown(boost::beast::role_type role, ClientStream& s,
                       boost::system::error_code& ec) {
    using boost::beast::websocket::teardown;
    std::visit([&](auto& stream) { teardown(role, stream, ec); }, s.stream_);
  }

 private:
  void ShutdownTcpSend() {
    boost::system::error_code ignored;
    next_layer().socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
  }

  std::variant<boost::beast::tcp_stream, TlsStream> stream_;
  std::shared_ptr<boost::asio::ssl::context> tls_context_;
  std::optional<std::string> client_principal_;
};

}  // namespace mp::http

// The byte stream of one client connection of monkeyproof-api (and of the CLI): plain TCP, TLS
// over TCP when the listener has a TLS context (http/tls.h), or a Unix stream socket
// (`listen_unix`, plain). HttpSession and WsSession read and write through it without knowing
// which: it is an AsyncStream for Beast's HTTP and WebSocket algorithms and the lowest layer of
// websocket::stream (deadlines and close here, teardown through the functions below); tcp() is
// the TCP stream for what only TCP has (the peer's address, TLS detection). Runs on the
// io_context thread; not thread-safe, like the streams it wraps.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/teardown.hpp>

namespace mp::http {

class ClientStream {
 public:
  using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;
  using UnixStream = boost::beast::basic_stream<boost::asio::local::stream_protocol>;
  using executor_type = boost::beast::tcp_stream::executor_type;

  // Plain TCP.
  explicit ClientStream(boost::beast::tcp_stream&& tcp) : stream_(std::move(tcp)) {}
  // TLS with `tls` (kept alive as long as the connection: a reload makes a new context for
  // new connections while this one goes on with the one it started with).
  ClientStream(boost::beast::tcp_stream&& tcp, std::shared_ptr<boost::asio::ssl::context> tls)
      : stream_(std::in_place_type<TlsStream>, std::move(tcp), *tls),
        tls_context_(std::move(tls)) {}
  // A Unix stream socket; `peer_uid`: the peer's uid (SO_PEERCRED), when known.
  ClientStream(UnixStream&& unix_stream, std::optional<uint32_t> peer_uid)
      : stream_(std::move(unix_stream)), peer_uid_(peer_uid) {}

  [[nodiscard]] bool is_tls() const { return std::holds_alternative<TlsStream>(stream_); }
  [[nodiscard]] bool is_unix() const { return std::holds_alternative<UnixStream>(stream_); }
  // Only when is_tls().
  TlsStream& tls() { return std::get<TlsStream>(stream_); }
  // The TCP stream (under TLS, if any); only when !is_unix().
  boost::beast::tcp_stream& tcp() {
    if (auto* tls = std::get_if<TlsStream>(&stream_)) return tls->next_layer();
    return std::get<boost::beast::tcp_stream>(stream_);
  }
  // The Unix socket's peer uid (SO_PEERCRED at accept); nullopt on TCP or when unknown.
  [[nodiscard]] std::optional<uint32_t> peer_uid() const { return peer_uid_; }

  // Calls f with the lowest stream: the TCP stream (under TLS, if any) or the Unix stream.
  template <class F>
  void VisitLowest(F&& f) {
    if (auto* unix_stream = std::get_if<UnixStream>(&stream_)) {
      f(*unix_stream);
    } else {
      f(tcp());
    }
  }
  executor_type get_executor() {
    if (auto* unix_stream = std::get_if<UnixStream>(&stream_)) return unix_stream->get_executor();
    return tcp().get_executor();
  }
  // Deadlines of the lowest stream (Beast's basic_stream timeouts).
  template <class Duration>
  void expires_after(Duration d) {
    VisitLowest([&](auto& s) { s.expires_after(d); });
  }
  void expires_never() {
    VisitLowest([](auto& s) { s.expires_never(); });
  }
  // Closes the socket: pending operations end with operation_aborted.
  void close() {
    VisitLowest([](auto& s) { s.close(); });
  }
  // shutdown(2) of the socket, below TLS; errors ignored.
  void ShutdownSocket(boost::asio::socket_base::shutdown_type what) {
    VisitLowest([what](auto& s) {
      boost::system::error_code ignored;
      s.socket().shutdown(what, ignored);
    });
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

  // Ends our sending side and calls done(): plain TCP and Unix shut their sending half at once;
  // TLS sends close_notify and waits for the peer's, at most `deadline`, then shuts TCP down.
  template <class Done>
  void AsyncShutdownSend(std::chrono::milliseconds deadline, Done done) {
    if (auto* tls = std::get_if<TlsStream>(&stream_)) {
      tls->next_layer().expires_after(deadline);
      tls->async_shutdown([this, done = std::move(done)](boost::system::error_code) mutable {
        ShutdownSocket(boost::asio::socket_base::shutdown_send);
        done();
      });
      return;
    }
    ShutdownSocket(boost::asio::socket_base::shutdown_send);
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
  // What websocket::stream calls to close its lowest layer (this stream) on a failure.
  friend void beast_close_socket(ClientStream& s) { s.close(); }

 private:
  std::variant<boost::beast::tcp_stream, TlsStream, UnixStream> stream_;
  std::shared_ptr<boost::asio::ssl::context> tls_context_;
  std::optional<std::string> client_principal_;
  std::optional<uint32_t> peer_uid_;
};

}  // namespace mp::http

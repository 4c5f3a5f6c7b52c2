// A blocking WebSocket client for the in-process API tests (http_ws_auth_test.cc,
// http_ws_token_end_test.cc): the upgrade with chosen subprotocols and Authorization header,
// JSON messages, the close code and reason, and whether the server ends the connection.
// Test code only.
#pragma once

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <string>

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>

#include "scope_fixture.h"

namespace mp::http::scope_test {

namespace websocket = boost::beast::websocket;

// One WebSocket client: the upgrade with the given subprotocols and Authorization header.
class Ws {
 public:
  Ws(uint16_t port, const std::string& target, const std::string& protocols,
     const std::string& authorization = {})
      : ws_(socket_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    scope_test::SetReceiveTimeout(socket_.native_handle(), 20);
    ws_.set_option(websocket::stream_base::decorator([=](websocket::request_type& req) {
      if (!protocols.empty()) req.set(bhttp::field::sec_websocket_protocol, protocols);
      if (!authorization.empty()) req.set(bhttp::field::authorization, authorization);
    }));
    // Asynchronously: Beast 1.74's synchronous handshake leaves a refusal's response empty.
    beast::error_code ec = asio::error::operation_aborted;
    ws_.async_handshake(response_, "127.0.0.1", target, [&ec](beast::error_code e) { ec = e; });
    io_.run();
    ok_ = !ec;
  }
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] int status() const { return response_.result_int(); }
  [[nodiscard]] std::string protocol() const {
    return std::string(response_[bhttp::field::sec_websocket_protocol]);
  }
  // Bytes the server has sent that are not read yet.
  size_t Pending() {
    int n = 0;
    ::ioctl(socket_.native_handle(), FIONREAD, &n);
    return static_cast<size_t>(n);
  }
  void Send(const std::string& text) {
    beast::error_code ec;
    ws_.text(true);
    ws_.write(asio::buffer(text), ec);
  }
  // The next message as JSON; null when the connection ended (close_code() says how: the
  // close frame's code, -1 for another error, -2 when nothing came within `limit`, after
  // which the connection is given up). Asynchronous: a blocking read would wait forever (Asio
  // polls again when SO_RCVTIMEO expires).
  json Read(std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    beast::flat_buffer buf;
    beast::error_code ec = asio::error::would_block;
    ws_.async_read(buf, [&ec](beast::error_code e, size_t) { ec = e; });
    io_.restart();
    io_.run_for(limit);
    if (ec == asio::error::would_block) {
      beast::error_code ignored;
      socket_.close(ignored);  // the read completes with operation_aborted
      io_.restart();
      io_.run();
      close_code_ = -2;
      return nullptr;
    }
    if (ec) {
      close_code_ = ec == websocket::error::closed ? static_cast<int>(ws_.reason().code) : -1;
      close_reason_ = std::string(ws_.reason().reason.data(), ws_.reason().reason.size());
      return nullptr;
    }
    return json::parse(beast::buffers_to_string(buf.data()), nullptr, false);
  }
  [[nodiscard]] int close_code() const { return close_code_; }
  [[nodiscard]] const std::string& close_reason() const { return close_reason_; }
  // Whether the server ends the TCP connection within `limit` while this client reads (and
  // drops) whatever comes but never answers a close frame.
  bool ServerClosesWithin(std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    char buf[512];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            end - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) return false;
      pollfd p{.fd = socket_.native_handle(), .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
      const ssize_t n = ::recv(socket_.native_handle(), buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

 private:
  asio::io_context io_;
  tcp::socket socket_{io_};
  websocket::stream<tcp::socket&> ws_;
  websocket::response_type response_;
  bool ok_ = false;
  int close_code_ = 0;
  std::string close_reason_;
};

}  // namespace mp::http::scope_test

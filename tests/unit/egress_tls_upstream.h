// A TLS stub upstream for the credential gateway's tests (egress_endpoint_test.cc,
// egress_daemon_test.cc): a server on 127.0.0.1 with a certificate from the test PKI that
// serves one connection at a time, records every request (head fields in order, body), and
// answers through a handler; and a reader of one HTTP response from a POSIX socket. Test code
// only.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_pki.h"

namespace mp::egress::testing {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = boost::asio::ssl;
using boost::asio::ip::tcp;

inline constexpr char kRealKey[] = "sk-ant-REAL-0123456789abcdef";
inline constexpr char kDummyKey[] = "dummy-key-in-the-session";

// What the stub upstream got: one entry per request.
struct Seen {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> fields;  // in order, as sent
  std::string body;
  int connection = 0;  // which TLS connection of the stub carried it (1, 2, ...)

  std::vector<std::string> Values(std::string_view name) const {
    std::vector<std::string> out;
    for (const auto& [n, v] : fields) {
      if (beast::iequals(n, beast::string_view(name.data(), name.size()))) out.push_back(v);
    }
    return out;
  }
};

using Request = http::request<http::string_body>;
using Stream = ssl::stream<tcp::socket>;
// Answers one request on `stream`; the default says 200 with a short body, echoes the
// credential header it got in `X-Echo` and the target in `X-Target`.
using Handler = std::function<void(const Request&, Stream&)>;

inline void DefaultAnswer(const Request& request, Stream& stream) {
  http::response<http::string_body> response(http::status::ok, request.version());
  response.set("X-Echo", std::string(request["x-api-key"]));
  response.set("X-Target", std::string(request.target()));
  response.body() = "got " + std::to_string(request.body().size()) + " bytes";
  response.keep_alive(request.keep_alive());
  response.prepare_payload();
  http::write(stream, response);
}

// A TLS server on 127.0.0.1 that serves one connection at a time, each for as many requests as
// the client sends.
class TlsUpstream {
 public:
  explicit TlsUpstream(const test::PemPair& cert, Handler handler = DefaultAnswer)
      : context_(ssl::context::tls_server),
        acceptor_(io_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)),
        handler_(std::move(handler)) {
    context_.use_certificate_chain(boost::asio::buffer(cert.cert));
    context_.use_private_key(boost::asio::buffer(cert.key), ssl::context::pem);
    thread_ = std::thread([this] { Serve(); });
  }
  ~TlsUpstream() {
    stop_ = true;
    if (const int fd = current_.load(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  int connections() const { return connections_; }
  int handshakes() const { return handshakes_; }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{acceptor_.native_handle(), POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      Stream stream(io_, context_);
      boost::system::error_code ec;
      acceptor_.accept(stream.next_layer(), ec);
      if (ec) continue;
      const int number = ++connections_;
      current_ = stream.next_layer().native_handle();
      if (stop_) ::shutdown(current_, SHUT_RDWR);
      stream.handshake(ssl::stream_base::server, ec);
      if (!ec) {
        ++handshakes_;
        beast::flat_buffer buffer;
        for (;;) {
          http::request_parser<http::string_body> parser;
          parser.body_limit(64 << 20);
          parser.header_limit(64 << 10);
          http::read(stream, buffer, parser, ec);
          if (ec) break;
          Request request = parser.release();
          Seen s{std::string(request.method_string()),
                 std::string(request.target()),
                 {},
                 request.body(),
                 number};
          for (const auto& field : request) {
            s.fields.emplace_back(std::string(field.name_string()), std::string(field.value()));
          }
          {
            std::lock_guard lock(mu_);
            seen_.push_back(std::move(s));
          }
          try {
            handler_(request, stream);
          } catch (const std::exception&) {
            break;
          }
          if (!request.keep_alive()) break;
        }
      }
      current_ = -1;
      stream.next_layer().close(ec);
    }
  }

  boost::asio::io_context io_;
  ssl::context context_;
  tcp::acceptor acceptor_;
  Handler handler_;
  std::atomic<bool> stop_{false};
  std::atomic<int> current_{-1};
  std::atomic<int> connections_{0};
  std::atomic<int> handshakes_{0};
  std::mutex mu_;
  std::vector<Seen> seen_;
  std::thread thread_;  // last
};

// Reads one HTTP response from `fd`; bytes after it stay in `carry`. Status 0 when the
// connection ended (or timed out) first. `to_head`: the answer to a HEAD request (no body,
// whatever Content-Length says).
inline http::response<http::string_body> ReadResponse(int fd, std::string& carry,
                                                      bool to_head = false) {
  http::response_parser<http::string_body> parser;
  parser.skip(to_head);
  parser.eager(true);
  parser.body_limit(64 << 20);
  for (;;) {
    if (!carry.empty()) {
      boost::system::error_code ec;
      const size_t used = parser.put(boost::asio::buffer(carry), ec);
      if (ec && ec != http::error::need_more) {
        ADD_FAILURE() << "bad response: " << ec.message() << "\n" << carry.substr(0, 200);
        return {};
      }
      carry.erase(0, used);
      if (parser.is_done()) return parser.release();
      if (used > 0) continue;
    }
    char buf[16384];
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      boost::system::error_code ec;
      if (n == 0 && parser.is_header_done()) parser.put_eof(ec);
      if (n == 0 && !ec && parser.is_done()) return parser.release();
      http::response<http::string_body> none;
      none.result(0u);
      return none;
    }
    carry.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace mp::egress::testing

// The HTTP proxy and the transparent HTTP listener (connections.h): one request head, read
// with Beast under a deadline, decides where the connection goes.
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>  // operator<< for the forwarded head
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

#include "egress/connections.h"
#include "egress/egress_session.h"
#include "egress/proxy_request.h"
#include "egress/relay.h"

namespace mp::egress {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

class HttpFront : public std::enable_shared_from_this<HttpFront> {
 public:
  HttpFront(std::shared_ptr<EgressSession> session, tcp::socket client,
            std::shared_ptr<ConnectionSlot> slot, bool transparent)
      : session_(std::move(session)),
        client_(std::move(client)),
        slot_(std::move(slot)),
        transparent_(transparent),
        deadline_(client_.get_executor()),
        buffer_(session_->config().limits.max_head_bytes) {}

  void Start() {
    slot_->close = [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->Abort();
    };
    parser_.header_limit(static_cast<std::uint32_t>(session_->config().limits.max_head_bytes));
    deadline_.expires_after(session_->config().limits.head_timeout);
    deadline_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->Abort();  // slow or incomplete head: close at the deadline
    });
    http::async_read_header(
        client_, buffer_, parser_,
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->OnHead(ec); });
  }

 private:
  const char* Listener() const { return transparent_ ? "http" : "proxy"; }

  void Abort() {
    deadline_.cancel();
    ResetClose(client_);
  }

  void OnHead(boost::system::error_code ec) {
    deadline_.cancel();
    if (ec) {
      if (!client_.is_open()) return;  // the deadline closed it
      return Refuse({}, 0, 400, "Bad Request", "malformed request head: " + ec.message());
    }
    const auto& request = parser_.get();
    // Two Host headers: this gateway would check one and the upstream might use the other.
    if (request.count(http::field::host) > 1) {
      return Refuse({}, 0, 400, "Bad Request", "more than one Host header");
    }
    std::optional<std::string_view> host;
    if (auto it = request.find(http::field::host); it != request.end()) {
      host = std::string_view(it->value().data(), it->value().size());
    }
    std::string method(request.method_string());
    std::string target(request.target());

    Result<ProxyTarget> parsed =
        transparent_ ? TransparentTarget(target, host) : ParseProxyTarget(method, target, host);
    if (!parsed) return Refuse({}, 0, 400, "Bad Request", parsed.error().what);
    target_ = std::move(*parsed);
    const Authority& destination = target_.destination;
    if (transparent_ && request.method() == http::verb::connect) {
      return Refuse(destination.host, destination.port, 400, "Bad Request",
                    "CONNECT is for the proxy, not the transparent listener");
    }
    if (!target_.tunnel && request.find(http::field::transfer_encoding) != request.end()) {
      return Refuse(destination.host, destination.port, 501, "Not Implemented",
                    "Transfer-Encoding in a request through the gateway is not supported; send "
                    "Content-Length");
    }
    session_->Open(destination,
                   [self = shared_from_this()](std::string refusal, tcp::socket upstream) {
                     self->OnOpen(std::move(refusal), std::move(upstream));
                   });
  }

  // The transparent listener's destination: the Host header, at the port it stands for.
  Result<ProxyTarget> TransparentTarget(const std::string& target,
                                        std::optional<std::string_view> host) {
    if (!host) return PlainError("request without a Host header");
    if (target.empty() || target[0] != '/') {
      return PlainError("the transparent listener takes origin-form targets (\"/path\") only");
    }
    std::string authority(*host);
    uint16_t port = session_->config().http_port;
    bool has_port = authority.starts_with('[') ? authority.find("]:") != std::string::npos
                                               : authority.find(':') != std::string::npos;
    if (!has_port) authority += ":" + std::to_string(port);
    Result<Authority> parsed = ParseAuthority(authority);
    if (!parsed) return parsed.error().Wrap("Host header");
    if (parsed->port != port) {
      return PlainError("Host header names port " + std::to_string(parsed->port) +
                        " on a connection to port " + std::to_string(port));
    }
    return ProxyTarget{*parsed, false, target};
  }

  void OnOpen(std::string refusal, tcp::socket upstream) {
    const Authority& destination = target_.destination;
    if (!refusal.empty()) {
      return Refuse(destination.host, destination.port, 403, "Forbidden", refusal);
    }
    std::string leftover(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    RelayOptions options;
    options.idle_timeout = session_->config().limits.idle_timeout;
    if (target_.tunnel) {
      options.first_up = std::move(leftover);
      auto reply = std::make_shared<std::string>("HTTP/1.1 200 Connection established\r\n\r\n");
      auto self = shared_from_this();
      auto up = std::make_shared<tcp::socket>(std::move(upstream));
      asio::async_write(client_, asio::buffer(*reply),
                        [self, reply, up, options](boost::system::error_code ec, size_t) mutable {
                          if (ec) return ResetClose(self->client_);
                          self->StartRelay(std::move(*up), std::move(options));
                        });
      return;
    }
    // One request per connection: its head rewritten to origin-form with `Connection: close`,
    // then exactly its Content-Length body; whatever the client sends after it stays unread.
    auto& request = parser_.get();
    uint64_t body = parser_.content_length().value_or(0);
    request.target(target_.origin_form);
    request.set(http::field::connection, "close");
    request.erase(http::field::proxy_connection);
    request.erase(http::field::proxy_authorization);
    request.erase("Keep-Alive");
    if (request.find(http::field::host) == request.end()) {
      request.set(http::field::host,
                  destination.port == 80 ? destination.host : destination.ToString());
    }
    std::ostringstream head;
    head << request.base();
    options.first_up = head.str();
    uint64_t from_buffer = std::min<uint64_t>(body, leftover.size());
    options.first_up.append(leftover, 0, static_cast<size_t>(from_buffer));
    options.up_limit = body - from_buffer;
    StartRelay(std::move(upstream), std::move(options));
  }

  void StartRelay(tcp::socket upstream, RelayOptions options) {
    StartAccountedRelay(session_, slot_, std::move(client_), std::move(upstream),
                        std::move(options),
                        Verdict{.listener = Listener(),
                                .name = target_.destination.host,
                                .port = target_.destination.port,
                                .allowed = true});
  }

  // Refuses with a short text; transparent connections are reset instead.
  void Refuse(std::string name, uint16_t port, int status, const char* phrase,
              const std::string& why) {
    session_->Report(Verdict{.listener = Listener(),
                             .name = std::move(name),
                             .port = port,
                             .allowed = false,
                             .reason = why});
    if (transparent_) return ResetClose(client_);
    AnswerAndClose(client_, status, phrase, why + "\n", shared_from_this());
  }

  std::shared_ptr<EgressSession> session_;
  tcp::socket client_;
  std::shared_ptr<ConnectionSlot> slot_;
  bool transparent_;
  asio::steady_timer deadline_;
  beast::flat_buffer buffer_;
  http::request_parser<http::empty_body> parser_;
  ProxyTarget target_;
};

}  // namespace

void StartHttpFront(std::shared_ptr<EgressSession> session, tcp::socket client,
                    std::shared_ptr<ConnectionSlot> slot, bool transparent) {
  std::make_shared<HttpFront>(std::move(session), std::move(client), std::move(slot), transparent)
      ->Start();
}

void AnswerAndClose(tcp::socket& client, int status, std::string_view phrase,
                    const std::string& text, std::shared_ptr<void> owner) {
  auto reply = std::make_shared<std::string>(
      "HTTP/1.1 " + std::to_string(status) + " " + std::string(phrase) +
      "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
      std::to_string(text.size()) + "\r\nConnection: close\r\n\r\n" + text);
  asio::async_write(client, asio::buffer(*reply),
                    [&client, owner = std::move(owner), reply](boost::system::error_code, size_t) {
                      boost::system::error_code ignored;
                      client.shutdown(tcp::socket::shutdown_send, ignored);
                      client.close(ignored);
                    });
}

void ResetClose(tcp::socket& socket) {
  if (!socket.is_open()) return;
  boost::system::error_code ignored;
  socket.set_option(asio::socket_base::linger(true, 0), ignored);
  socket.close(ignored);
}

}  // namespace mp::egress

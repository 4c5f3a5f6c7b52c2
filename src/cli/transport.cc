// The only translation unit of the CLI that includes Beast/Asio. Everything runs on one
// io_context on the calling thread: each public call runs the context until its own operation
// has completed, so tcp_stream's timeouts (which only apply to asynchronous operations) bound
// every connect, request and handshake.
#include "cli/transport.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <cerrno>
#include <deque>
#include <optional>

#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "common/version.h"
#include "http/client_stream.h"

namespace mp::cli {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using boost::system::error_code;
using Stream = ::mp::http::ClientStream;  // plain TCP or TLS

constexpr uint64_t kMaxBodyBytes = uint64_t{64} << 20;       // one HTTP answer
constexpr uint64_t kMaxWsMessageBytes = uint64_t{16} << 20;  // one WebSocket message
constexpr std::chrono::milliseconds kCloseGrace{2000};       // Stop(): flush and close

std::string UserAgent() { return std::string("monkeyproof-cli/") + kVersion; }

// Runs the context until `done`; also returns if it runs out of work (which would otherwise
// leave the caller waiting forever on a flag nothing can set).
void RunUntil(net::io_context& ioc, const bool& done) {
  ioc.restart();
  while (!done) {
    if (ioc.run_one() == 0) break;
  }
}

int Errnum(const error_code& ec) {
  return ec.category() == boost::system::system_category() ? ec.value() : 0;
}

std::string Seconds(std::chrono::milliseconds d) {
  const auto ms = d.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

// What a connect to `url` came to: interrupted, timed out, failed (with `hint`, what to check
// for that failure, appended) or done.
Result<void> ConnectOutcome(const ServerUrl& url, bool done, const error_code& ec,
                            std::chrono::milliseconds timeout, const std::string& hint) {
  if (!done) return PlainError("cannot connect to " + url.ToString() + ": interrupted");
  if (ec == beast::error::timeout) {
    return Error{ETIMEDOUT,
                 "cannot connect to " + url.ToString() + ": no answer within " + Seconds(timeout)};
  }
  if (ec)
    return Error{Errnum(ec), "cannot connect to " + url.ToString() + ": " + ec.message() + hint};
  return Ok();
}

// Resolves and connects `stream` to the server, within `timeout` for the connect.
Result<void> ConnectTcp(net::io_context& ioc, beast::tcp_stream& stream, const ServerUrl& url,
                        std::chrono::milliseconds timeout) {
  tcp::resolver resolver(ioc);
  error_code ec;
  tcp::resolver::results_type results;
  bool done = false;
  resolver.async_resolve(url.host, std::to_string(url.port),
                         [&](const error_code& e, tcp::resolver::results_type r) {
                           ec = e;
                           results = std::move(r);
                           done = true;
                         });
  RunUntil(ioc, done);
  if (!done) return PlainError("cannot resolve " + url.host + ": interrupted");
  if (ec) {
    return Error{Errnum(ec), "cannot connect to " + url.ToString() + ": cannot resolve host " +
                                 url.host + ": " + ec.message()};
  }
  done = false;
  stream.expires_after(timeout);
  stream.async_connect(results, [&](const error_code& e, const tcp::endpoint&) {
    ec = e;
    done = true;
  });
  RunUntil(ioc, done);
  stream.expires_never();
  return ConnectOutcome(
      url, done, ec, timeout,
      ec == net::error::connection_refused ? " (is monkeyproof-api running?)" : "");
}

// Connects to the Unix socket of a unix: URL (the API's listen_unix), within `timeout`.
Result<Stream> ConnectUnix(net::io_context& ioc, const ServerUrl& url,
                           std::chrono::milliseconds timeout) {
  Stream::UnixStream stream(ioc);
  error_code ec;
  bool done = false;
  stream.expires_after(timeout);
  stream.async_connect(net::local::stream_protocol::endpoint(url.unix_path),
                       [&](const error_code& e) {
                         ec = e;
                         done = true;
                       });
  RunUntil(ioc, done);
  stream.expires_never();
  std::string hint;
  if (ec == net::error::connection_refused || ec == net::error::not_found || ec.value() == ENOENT) {
    hint = " (is monkeyproof-api running with listen_unix = " + url.unix_path + "?)";
  } else if (ec == net::error::access_denied || ec.value() == EACCES) {
    hint = " (is your user in the socket's group, listen_unix_group?)";
  }
  MP_RETURN_IF_ERROR(ConnectOutcome(url, done, ec, timeout, hint));
  return Stream(std::move(stream), std::nullopt);
}

bool IsIpAddress(const std::string& host) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// The client context for https://: TLS 1.2+, the server's certificate verified against
// tls.ca_file (else the system's CAs), the client certificate when given. Files are read here.
Result<std::shared_ptr<net::ssl::context>> MakeClientContext(const ClientTls& tls) {
  auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_verify_mode(net::ssl::verify_peer);
  error_code ec;
  if (tls.ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec) return PlainError("cannot load the system's CA certificates: " + ec.message());
  } else {
    ctx->load_verify_file(tls.ca_file, ec);
    if (ec) {
      return PlainError("cannot use the CA file " + tls.ca_file + " (--ca-file): " + ec.message());
    }
  }
  if (!tls.cert_file.empty()) {
    ctx->use_certificate_chain_file(tls.cert_file, ec);
    if (ec) {
      return PlainError("cannot use the client certificate " + tls.cert_file +
                        " (--client-cert): " + ec.message());
    }
    ctx->use_private_key_file(tls.key_file, net::ssl::context::pem, ec);
    if (ec) {
      return PlainError("cannot use the client key " + tls.key_file + " (--client-key): " +
                        ec.message() + " (it must be the unencrypted key of --client-cert)");
    }
  }
  return ctx;
}

// Connects to `url` and, for https://, completes the TLS handshake (server name sent and
// verified), all within `timeout` per step. `tls` is made on first use and kept.
Result<Stream> OpenStream(net::io_context& ioc, const ServerUrl& url, const ClientTls& tls_files,
                          std::shared_ptr<net::ssl::context>& tls,
                          std::chrono::milliseconds timeout) {
  if (!url.unix_path.empty()) {
    MP_TRY(Stream unix_stream, ConnectUnix(ioc, url, timeout));
    return unix_stream;
  }
  beast::tcp_stream tcp_stream(ioc);
  MP_RETURN_IF_ERROR(ConnectTcp(ioc, tcp_stream, url, timeout));
  if (!url.https) return Stream(std::move(tcp_stream));
  if (!tls) {
    MP_TRY(tls, MakeClientContext(tls_files));
  }
  Stream stream(std::move(tcp_stream), tls);
  SSL* ssl = stream.tls().native_handle();
  if (IsIpAddress(url.host)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url.host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, url.host.c_str());  // SNI
    SSL_set1_host(ssl, url.host.c_str());
  }
  error_code ec;
  bool done = false;
  stream.expires_after(timeout);
  stream.tls().async_handshake(net::ssl::stream_base::client, [&](const error_code& e) {
    ec = e;
    done = true;
  });
  RunUntil(ioc, done);
  stream.expires_never();
  if (!done) return PlainError("TLS handshake with " + url.ToString() + " interrupted");
  if (ec == beast::error::timeout) {
    return Error{ETIMEDOUT,
                 "TLS handshake with " + url.ToString() + ": no answer within " + Seconds(timeout)};
  }
  if (ec) {
    std::string what = "TLS handshake with " + url.ToString() + " failed: " + ec.message();
    if (const long verify = SSL_get_verify_result(ssl); verify != X509_V_OK) {
      what += ": ";
      what += X509_verify_cert_error_string(verify);
      what += tls_files.ca_file.empty() ? " (give the server's CA with --ca-file)"
                                        : " (is " + tls_files.ca_file + " the server's CA?)";
    } else if (tls_files.cert_file.empty()) {
      what += " (if the server requires client certificates, give --client-cert and --client-key)";
    }
    return Error{Errnum(ec), std::move(what)};
  }
  return stream;
}

template <typename Body>
HttpResponse ToResponse(http::response<Body>&& res) {
  HttpResponse out;
  out.status = static_cast<int>(res.result_int());
  out.reason = std::string(res.reason());
  for (const auto& field : res) {
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  out.body = std::move(res.body());
  return out;
}

Error IoError(const ServerUrl& url, const error_code& ec, std::chrono::milliseconds timeout) {
  if (ec == beast::error::timeout) {
    return Error{ETIMEDOUT,
                 "the server at " + url.ToString() + " did not answer within " + Seconds(timeout)};
  }
  if (ec == http::error::body_limit) {
    return PlainError("the answer of the server at " + url.ToString() + " is larger than " +
                      std::to_string(kMaxBodyBytes >> 20) + " MiB");
  }
  if (ec.category() == net::error::get_ssl_category()) {
    // TLS 1.3 ends the handshake before the server has judged the client certificate: its
    // verdict arrives as an alert on the first request.
    std::string what = "TLS error with " + url.ToString() + ": " + ec.message();
    if (ec.message().find("certificate") != std::string::npos) {
      what += " (the server wants a client certificate it trusts: --client-cert, --client-key)";
    }
    return Error{0, std::move(what)};
  }
  return Error{Errnum(ec), "request to " + url.ToString() + " failed: " + ec.message()};
}

}  // namespace

// ---- HttpClient

struct HttpClient::Impl {
  ServerUrl url;
  std::string token;
  ClientTls tls_files;
  std::shared_ptr<net::ssl::context> tls;  // made on the first https:// connection
  TransportTimeouts timeouts;
  net::io_context ioc;
  std::optional<Stream> stream;
  beast::flat_buffer buffer;
  bool reused = false;  // the connection has carried a request already

  void Drop() {
    if (stream) {
      stream->ShutdownSocket(net::socket_base::shutdown_both);
      stream->close();
    }
    stream.reset();
    buffer.consume(buffer.size());
    reused = false;
  }
};

HttpClient::HttpClient(ServerUrl url, std::string token, ClientTls tls, TransportTimeouts timeouts)
    : impl_(std::make_unique<Impl>()) {
  impl_->url = std::move(url);
  impl_->token = std::move(token);
  impl_->tls_files = std::move(tls);
  impl_->timeouts = timeouts;
}

HttpClient::~HttpClient() { impl_->Drop(); }

Result<HttpResponse> HttpClient::Request(std::string_view method, std::string_view path_and_query,
                                         std::string_view body, std::string_view content_type) {
  Impl& im = *impl_;
  const http::verb verb = http::string_to_verb(beast::string_view(method.data(), method.size()));
  if (verb == http::verb::unknown) return PlainError("unknown HTTP method " + std::string(method));
  const bool idempotent = verb == http::verb::get || verb == http::verb::delete_;
  if (!idempotent) im.Drop();  // never risk sending a POST twice on a stale connection

  for (int attempt = 0;; ++attempt) {
    if (!im.stream) {
      Result<Stream> connected =
          OpenStream(im.ioc, im.url, im.tls_files, im.tls, im.timeouts.connect);
      if (!connected) {
        im.Drop();
        return std::move(connected).error();
      }
      im.stream.emplace(std::move(*connected));
    }
    // A keep-alive connection the server has closed meanwhile fails on first use; that, and
    // only that, is retried once on a fresh connection.
    const bool may_retry = im.reused && idempotent && attempt == 0;

    http::request<http::string_body> req{verb, im.url.Target(path_and_query), 11};
    req.set(http::field::host, im.url.HostHeader());
    req.set(http::field::user_agent, UserAgent());
    if (!im.token.empty()) req.set(http::field::authorization, "Bearer " + im.token);
    if (!body.empty() || verb == http::verb::post) {
      req.set(http::field::content_type,
              beast::string_view(content_type.data(), content_type.size()));
      req.body() = std::string(body);
    }
    req.keep_alive(true);
    req.prepare_payload();

    error_code ec;
    bool done = false;
    im.stream->expires_after(im.timeouts.request);
    http::async_write(*im.stream, req, [&](const error_code& e, size_t) {
      ec = e;
      done = true;
    });
    RunUntil(im.ioc, done);
    if (ec) {
      im.Drop();
      if (may_retry) continue;
      return IoError(im.url, ec, im.timeouts.request);
    }

    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxBodyBytes);
    parser.header_limit(64 * 1024);
    done = false;
    http::async_read(*im.stream, im.buffer, parser, [&](const error_code& e, size_t) {
      ec = e;
      done = true;
    });
    RunUntil(im.ioc, done);
    if (ec) {
      const bool closed_before_answer = ec == http::error::end_of_stream ||
                                        ec == net::error::connection_reset ||
                                        ec == net::error::eof || ec == net::error::broken_pipe ||
                                        ec == net::ssl::error::stream_truncated;
      im.Drop();
      if (may_retry && closed_before_answer) continue;
      return IoError(im.url, ec, im.timeouts.request);
    }
    im.stream->expires_never();
    http::response<http::string_body> res = parser.release();
    const bool keep = res.keep_alive();
    HttpResponse out = ToResponse(std::move(res));
    if (keep) {
      im.reused = true;
    } else {
      im.Drop();
    }
    return out;
  }
}

// ---- WsClient

namespace {

struct Outgoing {
  std::string data;
  bool binary = false;
  std::function<void()> on_sent;
};

// One connection. Handlers hold it by shared_ptr, so a connection that has been replaced stays
// valid until its last handler has run; they compare it with the current one and stand down.
struct Conn {
  explicit Conn(Stream&& stream) : ws(std::move(stream)) {}
  websocket::stream<Stream> ws;
  beast::flat_buffer buffer;
  std::optional<Outgoing> in_flight;
  bool closing = false;
};

}  // namespace

struct WsClient::Impl {
  ServerUrl url;
  std::string token;
  ClientTls tls_files;
  std::shared_ptr<net::ssl::context> tls;  // made on the first https:// connection
  TransportTimeouts timeouts;
  net::io_context ioc;  // first: destroyed last, after everything that uses it

  std::shared_ptr<Conn> conn;
  bool open = false;  // conn is connected and not yet finished
  std::deque<Outgoing> outbox;
  bool stop_requested = false;

  const TextHandler* on_text = nullptr;
  bool run_done = true;
  Result<void> run_result;

  net::steady_timer wait_timer{ioc};
  bool wait_done = true;
  net::steady_timer close_timer{ioc};

  struct SignalWatch {
    std::unique_ptr<net::signal_set> set;
    std::function<void(int)> handler;
  };
  std::vector<std::unique_ptr<SignalWatch>> signal_watches;

  void ArmSignal(SignalWatch* watch) {
    watch->set->async_wait([this, watch](const error_code& ec, int signo) {
      if (ec) return;
      watch->handler(signo);
      ArmSignal(watch);
    });
  }

  void Finish(Result<void> result) {
    if (!open) return;
    open = false;
    run_result = std::move(result);
    run_done = true;
    close_timer.cancel();
    error_code ignored;
    beast::get_lowest_layer(conn->ws).close();  // cancels what is pending
  }

  void DoRead() {
    std::shared_ptr<Conn> c = conn;
    c->ws.async_read(c->buffer, [this, c](const error_code& ec, size_t) {
      if (c != conn || !open) return;
      if (ec) {
        if (ec == websocket::error::closed || stop_requested) {
          Finish(Ok());
        } else if (ec == beast::error::timeout) {
          Finish(Error{ETIMEDOUT, "the connection to " + url.ToString() + " went silent"});
        } else {
          Finish(
              Error{Errnum(ec), "the connection to " + url.ToString() + " broke: " + ec.message()});
        }
        return;
      }
      if (c->ws.got_text() && on_text != nullptr) {
        const std::string text = beast::buffers_to_string(c->buffer.data());
        c->buffer.consume(c->buffer.size());
        (*on_text)(text);
      } else {
        c->buffer.consume(c->buffer.size());
      }
      if (c == conn && open) DoRead();
    });
  }

  void DoWrite() {
    if (!open || conn->in_flight || conn->closing) return;
    if (outbox.empty()) {
      if (stop_requested) DoClose();
      return;
    }
    std::shared_ptr<Conn> c = conn;
    c->in_flight = std::move(outbox.front());
    outbox.pop_front();
    c->ws.binary(c->in_flight->binary);
    c->ws.async_write(net::buffer(c->in_flight->data), [this, c](const error_code& ec, size_t) {
      Outgoing sent = std::move(*c->in_flight);
      c->in_flight.reset();
      if (sent.on_sent) sent.on_sent();
      if (c != conn || !open) return;
      if (ec) {
        Finish(Error{Errnum(ec), "sending to " + url.ToString() + " failed: " + ec.message()});
        return;
      }
      DoWrite();
    });
  }

  void DoClose() {
    if (!open || conn->closing) return;
    std::shared_ptr<Conn> c = conn;
    c->closing = true;
    close_timer.expires_after(kCloseGrace);
    close_timer.async_wait([this, c](const error_code& ec) {
      if (!ec && c == conn) Finish(Ok());
    });
    c->ws.async_close(websocket::close_code::normal, [this, c](const error_code&) {
      if (c == conn) Finish(Ok());
    });
  }
};

WsClient::WsClient(ServerUrl url, std::string token, ClientTls tls, TransportTimeouts timeouts)
    : impl_(std::make_unique<Impl>()) {
  impl_->url = std::move(url);
  impl_->token = std::move(token);
  impl_->tls_files = std::move(tls);
  impl_->timeouts = timeouts;
}

WsClient::~WsClient() {
  if (impl_->conn) {
    error_code ignored;
    beast::get_lowest_layer(impl_->conn->ws).close();
  }
  impl_->ioc.stop();
}

Result<HttpResponse> WsClient::Connect(std::string_view path_and_query) {
  Impl& im = *impl_;
  if (im.conn) {
    error_code ignored;
    beast::get_lowest_layer(im.conn->ws).close();
  }
  im.open = false;
  im.conn.reset();
  MP_TRY(Stream stream, OpenStream(im.ioc, im.url, im.tls_files, im.tls, im.timeouts.connect));
  im.conn = std::make_shared<Conn>(std::move(stream));
  std::shared_ptr<Conn> c = im.conn;

  // From here on the websocket stream's own timeouts apply (Beast's advice: the tcp_stream's
  // would otherwise fire on an idle but healthy connection).
  beast::get_lowest_layer(c->ws).expires_never();
  websocket::stream_base::timeout opt{};
  opt.handshake_timeout = im.timeouts.request;
  opt.idle_timeout = im.timeouts.ws_idle;
  opt.keep_alive_pings = true;
  c->ws.set_option(opt);
  c->ws.read_message_max(kMaxWsMessageBytes);
  c->ws.set_option(websocket::stream_base::decorator(
      [token = im.token, agent = UserAgent()](websocket::request_type& req) {
        req.set(http::field::user_agent, agent);
        if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
      }));

  websocket::response_type res;
  error_code ec;
  bool done = false;
  c->ws.async_handshake(res, im.url.HostHeader(), im.url.Target(path_and_query),
                        [&](const error_code& e) {
                          ec = e;
                          done = true;
                        });
  RunUntil(im.ioc, done);
  if (!done) return PlainError("WebSocket handshake with " + im.url.ToString() + " interrupted");
  if (ec) {
    error_code ignored;
    beast::get_lowest_layer(c->ws).close();
    if (ec == websocket::error::upgrade_declined && res.result_int() != 0) {
      return ToResponse(std::move(res));
    }
    if (ec == beast::error::timeout) {
      return Error{ETIMEDOUT, "the server at " + im.url.ToString() +
                                  " did not complete the WebSocket handshake within " +
                                  Seconds(im.timeouts.request)};
    }
    return Error{Errnum(ec),
                 "WebSocket handshake with " + im.url.ToString() + " failed: " + ec.message()};
  }
  im.open = true;
  HttpResponse out = ToResponse(std::move(res));
  out.status = 101;
  return out;
}

Result<void> WsClient::Run(const TextHandler& on_text) {
  Impl& im = *impl_;
  if (!im.open) return PlainError("not connected");
  im.on_text = &on_text;
  im.run_done = false;
  im.run_result = Ok();
  im.DoRead();
  im.DoWrite();  // what was queued while disconnected; closes at once after a Stop()
  RunUntil(im.ioc, im.run_done);
  im.on_text = nullptr;
  if (!im.run_done) im.Finish(Ok());  // ran out of work; cannot happen with a read pending
  return std::move(im.run_result);
}

void WsClient::SendText(std::string text, std::function<void()> on_sent) {
  impl_->outbox.push_back(Outgoing{std::move(text), false, std::move(on_sent)});
  impl_->DoWrite();
}

void WsClient::SendBinary(std::string data, std::function<void()> on_sent) {
  impl_->outbox.push_back(Outgoing{std::move(data), true, std::move(on_sent)});
  impl_->DoWrite();
}

void WsClient::Stop() {
  Impl& im = *impl_;
  im.stop_requested = true;
  Interrupt();
  if (im.open) im.DoWrite();  // closes once the outbox is empty
}

void WsClient::Post(std::function<void()> fn) { net::post(impl_->ioc, std::move(fn)); }

void WsClient::HandleSignals(const std::vector<int>& signals, std::function<void(int)> handler) {
  auto watch = std::make_unique<Impl::SignalWatch>();
  watch->set = std::make_unique<net::signal_set>(impl_->ioc);
  for (const int signo : signals) watch->set->add(signo);
  watch->handler = std::move(handler);
  impl_->ArmSignal(watch.get());
  impl_->signal_watches.push_back(std::move(watch));
}

void WsClient::Wait(std::chrono::milliseconds duration) {
  Impl& im = *impl_;
  if (im.stop_requested) return;
  im.wait_done = false;
  im.wait_timer.expires_after(duration);
  im.wait_timer.async_wait([&im](const error_code&) { im.wait_done = true; });
  RunUntil(im.ioc, im.wait_done);
}

void WsClient::Interrupt() { impl_->wait_timer.cancel(); }

}  // namespace mp::cli

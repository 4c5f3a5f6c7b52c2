#include "http/server.h"

#include <boost/asio/post.hpp>

#include "common/log.h"
#include "http/listener.h"
#include "http/tls.h"
#include "http/unix_listener.h"

namespace mp::http {

Server::Server(ApiConfig config, TokenSet tokens)
    : ctx_(std::make_shared<ApiContext>(io_, std::move(config), std::move(tokens))) {}

// Sessions still queued in io_ hold the context; it goes when io_ destroys their handlers.
Server::~Server() {
  ctx_->link.Stop();
  listeners_.clear();
  tls_listeners_.clear();
  unix_listeners_.clear();
  ctx_.reset();
}

Result<void> Server::Start() {
  // A store that cannot be read is a start error: running without it would forget revocations.
  const ApiConfig& c = ctx_->config;
  MP_TRY(ctx_->token_store,
         TokenStore::Open({c.token_store, c.token_max_ttl_seconds, c.max_scoped_tokens}));
  const TlsConfig& tls = ctx_->config.tls;
  if (!tls.client_principals_file.empty()) {
    MP_TRY(ctx_->client_principals, ClientPrincipals::Load(tls.client_principals_file));
  }
  if (!tls.listen.empty()) {
    MP_TRY(auto context, MakeServerTlsContext(tls));
    tls_ = std::make_shared<TlsContextSlot>(std::move(context));
  }
  for (const auto& address : ctx_->config.listen) {
    MP_TRY(auto listener, Listener::Open(*ctx_, address));
    listeners_.push_back(std::move(listener));
    boost::system::error_code ec;
    const auto ip = boost::asio::ip::make_address(address.host, ec);
    if (!ec && !ip.is_loopback()) {
      // Allowed, for deployments that already do it (a private network, a TLS proxy on
      // another host), but the token crosses that network in clear text.
      common::Log(common::LogLevel::kWarning,
                  "listening without TLS on " + address.host + ":" + std::to_string(address.port) +
                      ": tokens and output cross the network unencrypted; use tls_listen or a "
                      "TLS proxy (docs/deploy.md)");
    }
  }
  for (const auto& address : tls.listen) {
    MP_TRY(auto listener, Listener::Open(*ctx_, address, tls_));
    tls_listeners_.push_back(std::move(listener));
  }
  const std::string& listen_unix = ctx_->config.unix_socket.path;
  if (!inherited_.empty()) {
    if (!listen_unix.empty()) {
      // The socket unit is the way under systemd (listen_unix_group cannot work there, see
      // UnixListener::Open); a listen_unix left over from before must not stop the start.
      common::Log(common::LogLevel::kWarning,
                  "listen_unix = " + listen_unix + " in api.conf is ignored: systemd passed " +
                      inherited_.front().path + " (" + inherited_.front().name +
                      "), whose socket unit decides path, mode and group; remove listen_unix");
    }
    for (auto& socket : inherited_) {
      std::string origin = socket.name;
      MP_TRY(auto listener, UnixListener::Adopt(*ctx_, std::move(socket)));
      unix_sockets_.emplace_back(listener->path(), std::move(origin));
      unix_listeners_.push_back(std::move(listener));
    }
    inherited_.clear();
  } else if (!listen_unix.empty()) {
    MP_TRY(auto listener, UnixListener::Open(*ctx_, ctx_->config.unix_socket));
    unix_sockets_.emplace_back(listener->path(), "listen_unix");
    unix_listeners_.push_back(std::move(listener));
  }
  for (auto& l : listeners_) l->Run();
  for (auto& l : tls_listeners_) l->Run();
  for (auto& l : unix_listeners_) l->Run();
  ctx_->link.Start();
  return {};
}

void Server::InheritUnixSockets(std::vector<InheritedUnixSocket> sockets) {
  inherited_ = std::move(sockets);
}

std::vector<std::pair<std::string, std::string>> Server::unix_sockets() const {
  return unix_sockets_;
}

void Server::Run() { io_.run(); }

void Server::Stop() {
  boost::asio::post(io_, [this] {
    ctx_->link.Stop();
    io_.stop();
  });
}

Result<void> Server::ReloadTls() {
  if (!tls_) return Ok();
  auto context = MakeServerTlsContext(ctx_->config.tls);
  if (!context)
    return std::move(context).error().Wrap("TLS reload (the previous certificate stays)");
  tls_->Replace(std::move(*context));
  return Ok();
}

std::vector<boost::asio::ip::tcp::endpoint> Server::endpoints() const {
  std::vector<boost::asio::ip::tcp::endpoint> out;
  out.reserve(listeners_.size());
  for (const auto& l : listeners_) out.push_back(l->local_endpoint());
  return out;
}

std::vector<boost::asio::ip::tcp::endpoint> Server::tls_endpoints() const {
  std::vector<boost::asio::ip::tcp::endpoint> out;
  out.reserve(tls_listeners_.size());
  for (const auto& l : tls_listeners_) out.push_back(l->local_endpoint());
  return out;
}

}  // namespace mp::http

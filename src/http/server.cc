#include "http/server.h"

#include <algorithm>

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
  // The listeners bound here, not passed: what the fd store is asked to keep.
  std::vector<std::shared_ptr<Listener>> bound;
  auto serve = [&](const ListenAddress& address,
                   std::shared_ptr<TlsContextSlot> slot) -> Result<std::shared_ptr<Listener>> {
    boost::system::error_code ec;
    const auto ip = boost::asio::ip::make_address(address.host, ec);
    auto& passed = inherited_.tcp_sockets;
    const auto it = std::find_if(passed.begin(), passed.end(), [&](const InheritedTcpSocket& s) {
      return !ec && address.port != 0 &&
             s.endpoint == boost::asio::ip::tcp::endpoint(ip, address.port);
    });
    if (it == passed.end()) {
      MP_TRY(auto listener, Listener::Open(*ctx_, address, std::move(slot)));
      bound.push_back(listener);
      return listener;
    }
    common::Log(common::LogLevel::kInfo,
                "serving " + address.host + " port " + std::to_string(address.port) +
                    " with the socket systemd passed (" + it->name +
                    "): the port stayed bound while the API was not running");
    MP_TRY(auto listener, Listener::Adopt(*ctx_, std::move(it->fd), it->endpoint, std::move(slot)));
    passed.erase(it);
    return listener;
  };
  for (const auto& address : ctx_->config.listen) {
    MP_TRY(auto listener, serve(address, nullptr));
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
    MP_TRY(auto listener, serve(address, tls_));
    tls_listeners_.push_back(std::move(listener));
  }
  // What is left was passed for no address of api.conf. A socket the API stored itself served
  // an address api.conf named before it was changed: let go. A socket unit's is the operator's
  // mistake, said before anything is served.
  std::vector<std::string> forget;
  for (InheritedTcpSocket& s : inherited_.tcp_sockets) {
    const std::string where =
        s.endpoint.address().to_string() + " port " + std::to_string(s.endpoint.port());
    if (!s.stored()) {
      return PlainError("systemd passed a TCP socket bound to " + where + " (\"" + s.name +
                        "\"), and neither listen nor tls_listen in api.conf names that address: "
                        "name it there, or remove its ListenStream= from the socket unit");
    }
    common::Log(common::LogLevel::kInfo,
                "closing the kept socket for " + where + ": api.conf no longer names that address");
    forget.push_back(s.name);
  }
  inherited_.tcp_sockets.clear();
  if (notifier_) {
    for (const std::string& name : forget) {
      if (auto removed = notifier_->RemoveFd(name); !removed) {
        common::Log(common::LogLevel::kWarning, removed.error().ToString());
      }
    }
    for (const auto& listener : bound) {
      const auto endpoint = listener->local_endpoint();
      const std::string name = StoredListenerName(endpoint);
      if (auto kept = notifier_->StoreFd(name, listener->native_handle()); !kept) {
        common::Log(common::LogLevel::kWarning,
                    "systemd does not keep " + endpoint.address().to_string() + " port " +
                        std::to_string(endpoint.port()) + " (" + kept.error().ToString() +
                        "): the port is free while the API restarts, and another local user "
                        "could take it (FileDescriptorStoreMax= and NotifyAccess=main in the "
                        "unit, docs/deploy.md)");
      }
    }
  }
  const std::string& listen_unix = ctx_->config.unix_socket.path;
  auto& inherited_unix = inherited_.unix_sockets;
  if (!inherited_unix.empty()) {
    if (!listen_unix.empty()) {
      // The socket unit is the way under systemd (listen_unix_group cannot work there, see
      // UnixListener::Open); a listen_unix left over from before must not stop the start.
      common::Log(common::LogLevel::kWarning,
                  "listen_unix = " + listen_unix + " in api.conf is ignored: systemd passed " +
                      inherited_unix.front().path + " (" + inherited_unix.front().name +
                      "), whose socket unit decides path, mode and group; remove listen_unix");
    }
    for (auto& socket : inherited_unix) {
      std::string origin = socket.name;
      MP_TRY(auto listener, UnixListener::Adopt(*ctx_, std::move(socket)));
      unix_sockets_.emplace_back(listener->path(), std::move(origin));
      unix_listeners_.push_back(std::move(listener));
    }
    inherited_unix.clear();
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

void Server::Inherit(InheritedSockets sockets) { inherited_ = std::move(sockets); }

void Server::KeepTcpListenersIn(sd::Notifier notifier) { notifier_.emplace(std::move(notifier)); }

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

#include "http/server.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>

#include <boost/asio/post.hpp>

#include "common/log.h"
#include "http/listener.h"
#include "http/tls.h"
#include "http/unix_listener.h"

namespace mp::http {
namespace {

// `address` of api.conf is where `endpoint` is bound (port 0, "any free port", names none).
bool Names(const ListenAddress& address, const boost::asio::ip::tcp::endpoint& endpoint) {
  boost::system::error_code ec;
  const auto ip = boost::asio::ip::make_address(address.host, ec);
  return !ec && address.port != 0 && endpoint == boost::asio::ip::tcp::endpoint(ip, address.port);
}

}  // namespace

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
  // Each passed TCP socket serves the address of api.conf it is bound to. What is left was
  // passed for no address: a socket the API stored itself served an address api.conf named
  // before it was changed, and is let go first, in the store too, so that a new address on the
  // same port (0.0.0.0:3200 after 127.0.0.1:3200) can be bound; a socket unit's is the
  // operator's mistake, said before anything is served.
  auto& passed = inherited_.tcp_sockets;
  std::vector<uint16_t> released;
  for (auto it = passed.begin(); it != passed.end();) {
    const bool named =
        std::any_of(c.listen.begin(), c.listen.end(),
                    [&](const ListenAddress& a) { return Names(a, it->endpoint); }) ||
        std::any_of(tls.listen.begin(), tls.listen.end(),
                    [&](const ListenAddress& a) { return Names(a, it->endpoint); });
    if (named) {
      ++it;
      continue;
    }
    const std::string where =
        it->endpoint.address().to_string() + " port " + std::to_string(it->endpoint.port());
    if (!it->stored()) {
      return PlainError("systemd passed a TCP socket bound to " + where + " (\"" + it->name +
                        "\"), and neither listen nor tls_listen in api.conf names that address: "
                        "name it there, or remove its ListenStream= from the socket unit");
    }
    common::Log(common::LogLevel::kInfo,
                "closing the kept socket for " + where + ": api.conf no longer names that address");
    if (notifier_) {
      if (auto removed = notifier_->RemoveFd(it->name); !removed) {
        common::Log(common::LogLevel::kWarning, removed.error().ToString());
      }
    }
    released.push_back(it->endpoint.port());
    it = passed.erase(it);  // closed: only the store's copy, going now, still holds the port
  }
  // The listeners bound here, not passed: what the fd store is asked to keep.
  std::vector<std::shared_ptr<Listener>> bound;
  auto serve = [&](const ListenAddress& address,
                   std::shared_ptr<TlsContextSlot> slot) -> Result<std::shared_ptr<Listener>> {
    const auto it = std::find_if(passed.begin(), passed.end(), [&](const InheritedTcpSocket& s) {
      return Names(address, s.endpoint);
    });
    if (it == passed.end()) {
      auto listener = Listener::Open(*ctx_, address, slot);
      // systemd closes its copy of a released socket when it reads FDSTOREREMOVE, a moment
      // later: a bind to that port waits for it, up to 5 s.
      const bool was_released =
          std::find(released.begin(), released.end(), address.port) != released.end();
      for (int wait = 0;
           !listener && was_released && listener.error().errnum == EADDRINUSE && wait < 50;
           ++wait) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        listener = Listener::Open(*ctx_, address, slot);
      }
      if (!listener) return std::move(listener).error();
      bound.push_back(*listener);
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
  passed.clear();
  if (notifier_) {
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

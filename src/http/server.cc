#include "http/server.h"

#include <boost/asio/post.hpp>

#include "http/listener.h"

namespace mp::http {

Server::Server(ApiConfig config, TokenSet tokens)
    : ctx_(std::make_shared<ApiContext>(io_, std::move(config), std::move(tokens))) {}

// Sessions still queued in io_ hold the context; it goes when io_ destroys their handlers.
Server::~Server() {
  ctx_->link.Stop();
  listeners_.clear();
  ctx_.reset();
}

Result<void> Server::Start() {
  // A store that cannot be read is a start error: running without it would forget revocations.
  const ApiConfig& c = ctx_->config;
  MP_TRY(ctx_->token_store,
         TokenStore::Open({c.token_store, c.token_max_ttl_seconds, c.max_scoped_tokens}));
  for (const auto& address : ctx_->config.listen) {
    MP_TRY(auto listener, Listener::Open(*ctx_, address));
    listeners_.push_back(std::move(listener));
  }
  for (auto& l : listeners_) l->Run();
  ctx_->link.Start();
  return {};
}

void Server::Run() { io_.run(); }

void Server::Stop() {
  boost::asio::post(io_, [this] {
    ctx_->link.Stop();
    io_.stop();
  });
}

std::vector<boost::asio::ip::tcp::endpoint> Server::endpoints() const {
  std::vector<boost::asio::ip::tcp::endpoint> out;
  out.reserve(listeners_.size());
  for (const auto& l : listeners_) out.push_back(l->local_endpoint());
  return out;
}

}  // namespace mp::http

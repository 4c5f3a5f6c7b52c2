// The optional Unix-socket listener of monkeyproof-api (`listen_unix` in api.conf): accepts
// local connections and starts an HttpSession for each, with the same routes and the same
// token auth as TCP (plain HTTP: the socket never leaves the host). The client is named by its
// uid (SO_PEERCRED) in logs and the audit ("unix:uid=1000"). Its connections are outside the
// network's pre-auth register: no network connection can evict one, and at max_connections
// one of them evicts the oldest unauthenticated network connection (503 only when every open
// connection has authenticated). The file's mode and group say who may connect. Runs on the
// io_context thread.
#pragma once

#include <memory>
#include <string>

#include <boost/asio/local/stream_protocol.hpp>

#include "common/result.h"
#include "http/api_context.h"

namespace mp::http {

class UnixListener : public std::enable_shared_from_this<UnixListener> {
 public:
  // Binds config.path (a stale socket left by an earlier run is replaced; one another process
  // still listens on is an error), then sets its mode and group; errors name the path and step.
  static Result<std::shared_ptr<UnixListener>> Open(ApiContext& ctx,
                                                    const UnixListenConfig& config);
  ~UnixListener();  // removes the socket file
  void Run() { DoAccept(); }

 private:
  UnixListener(ApiContext& ctx, boost::asio::local::stream_protocol::acceptor acceptor,
               std::string path)
      : ctx_(ctx),
        keep_(ctx.shared_from_this()),
        acceptor_(std::move(acceptor)),
        path_(std::move(path)) {}
  void DoAccept();
  void OnAccept(boost::system::error_code ec, boost::asio::local::stream_protocol::socket socket);

  ApiContext& ctx_;
  std::shared_ptr<ApiContext> keep_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::string path_;
};

}  // namespace mp::http

// The Unix-socket listener of monkeyproof-api: the socket `listen_unix` in api.conf names (bound
// here), or one systemd passed (socket activation, the package's monkeyproof-api.socket:
// http/listen_fds.h). Accepts local connections and starts an HttpSession for each, with the
// same routes and the same token auth as TCP (plain HTTP: the socket never leaves the host). The
// client is named by its uid (SO_PEERCRED) in logs and the audit ("unix:uid=1000"). Its
// connections are outside the network's pre-auth register, in one of their own per uid
// (ApiContext::unix_limits, max_unix_connections_per_uid; root exempt): no network connection
// can evict one, and at max_connections one of them evicts the oldest unauthenticated network
// connection (503 only when every open network connection has authenticated; root's evicts the
// oldest unauthenticated Unix connection then). The file's mode and group say who may connect.
// Runs on the io_context thread.
#pragma once

#include <memory>
#include <string>

#include <boost/asio/local/stream_protocol.hpp>

#include "common/result.h"
#include "http/api_context.h"
#include "http/listen_fds.h"

namespace mp::http {

class UnixListener : public std::enable_shared_from_this<UnixListener> {
 public:
  // Binds config.path (a stale socket left by an earlier run is replaced; one another process
  // still listens on is an error), then sets its mode and group; errors name the path and step.
  // A chown to listen_unix_group that fails with EPERM says to use the socket unit instead.
  static Result<std::shared_ptr<UnixListener>> Open(ApiContext& ctx,
                                                    const UnixListenConfig& config);
  // Serves a listening socket systemd passed (TakeInheritedSockets checked it). Its file,
  // mode and group are the socket unit's: nothing is changed, and nothing removed at the end.
  static Result<std::shared_ptr<UnixListener>> Adopt(ApiContext& ctx, InheritedUnixSocket socket);
  ~UnixListener();  // removes the socket file it bound (not one systemd passed)
  void Run() { DoAccept(); }
  // The socket's path ("/run/monkeyproof-api/api.sock"; an inherited one's name when unnamed).
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  UnixListener(ApiContext& ctx, boost::asio::local::stream_protocol::acceptor acceptor,
               std::string path, bool owns_file)
      : ctx_(ctx),
        keep_(ctx.shared_from_this()),
        acceptor_(std::move(acceptor)),
        path_(std::move(path)),
        owns_file_(owns_file) {}
  void DoAccept();
  void OnAccept(boost::system::error_code ec, boost::asio::local::stream_protocol::socket socket);

  ApiContext& ctx_;
  std::shared_ptr<ApiContext> keep_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::string path_;
  bool owns_file_;  // bound here (listen_unix): removed at the end
};

}  // namespace mp::http

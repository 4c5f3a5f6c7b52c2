#include "http/unix_listener.h"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <utility>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>

#include "common/log.h"
#include "http/client_stream.h"
#include "http/http_session.h"

namespace mp::http {
namespace asio = boost::asio;
using local = asio::local::stream_protocol;

namespace {

// The gid of `group`, by name or number.
Result<gid_t> GroupId(const std::string& group) {
  std::vector<char> buf(16384);
  struct group g {};
  struct group* found = nullptr;
  const int rc = ::getgrnam_r(group.c_str(), &g, buf.data(), buf.size(), &found);
  if (rc == 0 && found != nullptr) return found->gr_gid;
  if (rc != 0 && rc != ENOENT) return ErrnoError(rc, "getgrnam_r(\"" + group + "\")");
  if (!group.empty() && group.find_first_not_of("0123456789") == std::string::npos &&
      group.size() < 10) {
    return static_cast<gid_t>(std::stoul(group));
  }
  return PlainError("listen_unix_group \"" + group + "\": no such group");
}

}  // namespace

Result<std::shared_ptr<UnixListener>> UnixListener::Open(ApiContext& ctx,
                                                         const UnixListenConfig& config) {
  const std::string& path = config.path;
  const std::string name = "listen_unix \"" + path + "\"";
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return PlainError(name + ": exists and is not a socket; remove it or choose another path");
    }
    // A socket file outlives its listener. Connecting tells a stale one (refused) from one a
    // running instance serves, which must not be taken over.
    local::socket probe(ctx.io);
    boost::system::error_code ec;
    probe.connect(local::endpoint(path), ec);
    if (!ec)
      return PlainError(name + ": another process listens on it (a second monkeyproof-api?)");
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      const int err = errno;
      return ErrnoError(err, "unlink stale " + name);
    }
  }
  boost::system::error_code ec;
  local::acceptor acceptor(ctx.io);
  auto fail = [&](const char* step) {
    return Result<std::shared_ptr<UnixListener>>(
        ErrnoError(ec.value(), std::string(step) + " " + name));
  };
  acceptor.open(local(), ec);
  if (ec) return fail("socket");
  // bind creates the file with 0777 & ~umask (systemd's default UMask 0022: 0755, which lets
  // nobody else connect, as connecting needs write permission) until the chmod below.
  acceptor.bind(local::endpoint(path), ec);
  if (ec) return fail("bind");
  std::shared_ptr<UnixListener> listener(
      new UnixListener(ctx, std::move(acceptor), path, /*owns_file=*/true));
  if (!config.group.empty()) {
    MP_TRY(const gid_t gid, GroupId(config.group));
    // Permitted to an unprivileged owner only for one of its own groups, and only for a group
    // its user namespace maps: under the package's unit (PrivateUsers=yes) none but its own,
    // whatever SupplementaryGroups= says.
    if (::chown(path.c_str(), static_cast<uid_t>(-1), gid) != 0) {
      const int err = errno;
      if (err == EPERM) {
        return ErrnoError(
            err, "chown " + name + " to group \"" + config.group +
                     "\": monkeyproof-api may give the socket only to a group it is a member of, "
                     "and under systemd with PrivateUsers=yes (the package's unit) to none but "
                     "its own. Under systemd remove listen_unix from api.conf and use the socket "
                     "unit: set its SocketGroup= (systemctl edit monkeyproof-api.socket), then "
                     "systemctl enable --now monkeyproof-api.socket (docs/deploy.md, \"A Unix "
                     "socket for local operators\")");
      }
      return ErrnoError(err, "chown " + name + " to group \"" + config.group + "\"");
    }
  }
  if (::chmod(path.c_str(), static_cast<mode_t>(config.mode)) != 0) {
    const int err = errno;
    return ErrnoError(err, "chmod " + name);
  }
  listener->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen");
  return listener;
}

Result<std::shared_ptr<UnixListener>> UnixListener::Adopt(ApiContext& ctx,
                                                          InheritedUnixSocket socket) {
  std::string path = !socket.path.empty() ? socket.path : "(unnamed, " + socket.name + ")";
  boost::system::error_code ec;
  local::acceptor acceptor(ctx.io);
  acceptor.assign(local(), socket.fd.get(), ec);
  if (ec) {
    return ErrnoError(ec.value(),
                      "take the socket systemd passed, " + path + " (\"" + socket.name + "\")");
  }
  (void)socket.fd.Release();  // the acceptor's now
  return std::shared_ptr<UnixListener>(
      new UnixListener(ctx, std::move(acceptor), std::move(path), /*owns_file=*/false));
}

UnixListener::~UnixListener() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  // systemd's socket stays where it is: it listens on after this process ends, and starts the
  // next one when a client connects.
  if (owns_file_) ::unlink(path_.c_str());
}

void UnixListener::DoAccept() {
  acceptor_.async_accept(
      ctx_.io, boost::beast::bind_front_handler(&UnixListener::OnAccept, shared_from_this()));
}

void UnixListener::OnAccept(boost::system::error_code ec, local::socket socket) {
  if (ec == asio::error::operation_aborted) return;
  if (ec) {
    common::Log(common::LogLevel::kError, "accept on " + path_ + ": " + ec.message());
    auto timer = std::make_shared<asio::steady_timer>(ctx_.io, std::chrono::milliseconds(100));
    timer->async_wait(
        [self = shared_from_this(), timer](boost::system::error_code) { self->DoAccept(); });
    return;
  }
  std::optional<uint32_t> uid;
  if (ctx_.unix_peer_uid) {
    uid = ctx_.unix_peer_uid(socket.native_handle());
  } else {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      uid = cred.uid;
    }
  }
  // At the global cap the oldest unauthenticated network connection makes room; none of the
  // Unix connections is ever that one (they are in a register of their own, unix_limits). When
  // there is none, root's connection takes the place of the oldest unauthenticated Unix one:
  // idle connections of local users can keep out other local users at most until each has
  // its max_unix_connections_per_uid, and never root.
  if (ctx_.connections >= ctx_.config.max_connections && !ctx_.connection_limits.EvictOldest() &&
      !(uid == 0u && ctx_.unix_limits.EvictOldest())) {
    static const std::string kBusy = [] {
      const std::string body =
          R"({"error":"too many connections; retry later","code":"unavailable"})";
      return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
             "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
             std::to_string(body.size()) + "\r\n\r\n" + body;
    }();
    auto s = std::make_shared<local::socket>(std::move(socket));
    asio::async_write(*s, asio::buffer(kBusy.data(), kBusy.size()),
                      [s](boost::system::error_code, size_t) {
                        boost::system::error_code ignored;
                        s->shutdown(local::socket::shutdown_both, ignored);
                      });
    DoAccept();
    return;
  }
  ++ctx_.connections;
  ClientStream stream(ClientStream::UnixStream(std::move(socket)), uid);
  std::make_shared<HttpSession>(ctx_, std::move(stream))->Run();
  DoAccept();
}

}  // namespace mp::http

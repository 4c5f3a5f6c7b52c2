// monkeyproof-egress: serves the network of "allowlist" sessions (issue 14). Reads
// /etc/monkeyproof/egress.conf (`key = value`, common/kv_config), listens on the handover
// socket for the supervisor (egress_daemon.h), and logs every verdict as one line on stderr
// (the journal under systemd). Runs as its own unprivileged user; refuses to run as root.
#include <sys/prctl.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "common/json_strict.h"
#include "common/kv_config.h"
#include "common/log.h"
#include "common/version.h"
#include "egress/egress_daemon.h"
#include "egress/host_name.h"

namespace {

namespace asio = boost::asio;
using mp::common::Log;
using mp::common::LogLevel;

constexpr char kDefaultConfig[] = "/etc/monkeyproof/egress.conf";

constexpr char kUsage[] = R"(usage: monkeyproof-egress [--config PATH] [--allow-root]
                          [--unsafe-test-private-upstream ADDRESS:PORT]...
                          [--upstream-ca FILE]

Serves the network of sessions whose policy says "network": {"mode": "allowlist", ...}:
an HTTP proxy, transparent TLS and HTTP, and a stub DNS per session, on listening sockets
that monkeyproofd creates inside each session's network namespace and hands over on the
handover socket. Every connection and DNS answer is decided by the session's allow list.
A session's model endpoints (credential gateway) take plain HTTP on their own listeners and
forward it over TLS to their pinned upstream with the real credential swapped in.

  --config PATH   settings (default /etc/monkeyproof/egress.conf; may be missing)
  --allow-root    run as root anyway (tests only; the daemon needs no privilege)
  --unsafe-test-private-upstream ADDRESS:PORT
                  TESTS ONLY: a name may resolve to this non-public endpoint
  --upstream-ca FILE
                  TESTS ONLY: model endpoints verify their upstreams against the CAs in
                  this PEM file instead of the system CA store

Settings (egress.conf, `key = value`):
  socket = /run/monkeyproof-egress/handover.sock   the handover socket
  supervisor_uid = 0                 the only uid that may connect to it
  max_connections = 64               open connections per session
  max_total_bytes = 16G              bytes relayed per session over its life
  idle_timeout_seconds = 300         a relay with no byte either way is closed
)";

struct Options {
  std::string config = kDefaultConfig;
  bool allow_root = false;
  mp::egress::DaemonOptions daemon;
};

mp::Result<void> LoadSettings(Options& o) {
  auto text = mp::common::ReadConfigText(o.config, /*optional=*/true);
  if (!text) return text.error();
  uint64_t idle_seconds = 300;
  mp::common::KvSchema schema;
  schema.Path("socket", &o.daemon.socket_path)
      .Number("max_connections", &o.daemon.limits.max_connections, 1, 65536)
      .Size("max_total_bytes", &o.daemon.limits.max_total_bytes, 1)
      .Number("idle_timeout_seconds", &idle_seconds, 1, 86400)
      .Custom("supervisor_uid", [&](std::string_view v) -> mp::Result<void> {
        auto n = mp::common::ParseKvNumber(v);
        if (!n || *n > 0xfffffffeull) return mp::PlainError("expected a uid");
        o.daemon.supervisor_uid = static_cast<uid_t>(*n);
        return mp::Ok();
      });
  MP_RETURN_IF_ERROR(schema.Parse(*text, o.config));
  o.daemon.limits.idle_timeout = std::chrono::seconds(idle_seconds);
  return mp::Ok();
}

mp::Result<asio::ip::tcp::endpoint> ParseEndpoint(std::string_view text) {
  auto authority = mp::egress::ParseAuthority(text);
  if (!authority || !authority->is_address) {
    return mp::PlainError("--unsafe-test-private-upstream wants ADDRESS:PORT, not \"" +
                          std::string(text) + "\"");
  }
  boost::system::error_code ec;
  auto address = asio::ip::make_address(authority->host, ec);
  if (ec) return mp::PlainError("bad address in \"" + std::string(text) + "\"");
  return asio::ip::tcp::endpoint(address, authority->port);
}

void LogVerdict(const mp::egress::Verdict& v) {
  using mp::wire::QuoteForError;
  // An answered DNS query is no connection: the supervisor's audit log has it (throttled).
  if (v.listener == "dns" && v.allowed) return;
  std::string line = "event=verdict session=" + v.session_id + " listener=" + v.listener +
                     " name=" + QuoteForError(v.name) + " port=" + std::to_string(v.port) +
                     " verdict=" + (v.allowed ? "allow" : "deny");
  if (!v.reason.empty()) line += " reason=" + QuoteForError(v.reason);
  if (v.allowed) {
    line +=
        " bytes_up=" + std::to_string(v.bytes_up) + " bytes_down=" + std::to_string(v.bytes_down);
  }
  Log(v.allowed ? LogLevel::kInfo : LogLevel::kWarning, line);
}

int Run(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--version") {
      std::printf("monkeyproof-egress %s\n", mp::kVersion);
      return 0;
    }
    if (a == "--allow-root") {
      o.allow_root = true;
    } else if ((a == "--config" || a == "--unsafe-test-private-upstream" || a == "--upstream-ca") &&
               i + 1 < argc) {
      const std::string_view v = argv[++i];
      if (a == "--config") {
        o.config = v;
      } else if (a == "--upstream-ca") {
        o.daemon.upstream_ca_file = v;
      } else {
        auto endpoint = ParseEndpoint(v);
        if (!endpoint) {
          Log(LogLevel::kError, endpoint.error().ToString());
          return 2;
        }
        o.daemon.test_private_upstreams.insert(*endpoint);
      }
    } else {
      std::fprintf(stderr, "monkeyproof-egress: unknown argument \"%s\"\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (::geteuid() == 0 && !o.allow_root) {
    Log(LogLevel::kError,
        "refusing to run as root: run as the monkeyproof-egress user (the packaged unit "
        "does), or pass --allow-root in tests");
    return 1;
  }
  // It holds the credential gateway's keys: no core dump, and no ptrace or /proc/PID/mem even
  // for a process of its own uid (its /proc files become root's).
  if (::prctl(PR_SET_DUMPABLE, 0) != 0) {
    Log(LogLevel::kError, std::string("prctl(PR_SET_DUMPABLE, 0): ") + std::strerror(errno));
    return 1;
  }
  if (auto loaded = LoadSettings(o); !loaded) {
    Log(LogLevel::kError, loaded.error().ToString());
    return 1;
  }
  if (!o.daemon.upstream_ca_file.empty()) {
    Log(LogLevel::kWarning, "TEST MODE: --upstream-ca: model endpoints trust only the CAs in " +
                                mp::wire::QuoteForError(o.daemon.upstream_ca_file) +
                                ", not the system store");
  }
  if (!o.daemon.test_private_upstreams.empty()) {
    Log(LogLevel::kWarning,
        "TEST MODE: --unsafe-test-private-upstream lets names resolve to non-public "
        "endpoints");
  }
  asio::io_context io(1);
  auto daemon = mp::egress::EgressDaemon::Create(io, o.daemon, mp::egress::MakeSystemResolver(io),
                                                 LogVerdict);
  if (!daemon) {
    Log(LogLevel::kError, daemon.error().ToString());
    return 1;
  }
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    Log(LogLevel::kInfo, "event=stopping");
    (*daemon)->Stop();
    io.stop();
  });
  (*daemon)->Start();
  Log(LogLevel::kInfo, "event=listening socket=" + o.daemon.socket_path +
                           " supervisor_uid=" + std::to_string(o.daemon.supervisor_uid));
  io.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mp::common::SetLogProgram("monkeyproof-egress");
  return Run(argc, argv);
}

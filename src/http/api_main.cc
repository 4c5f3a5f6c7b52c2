// monkeyproof-api: entry point. Takes the sockets systemd passed (socket activation and its fd
// store, http/listen_fds.h), loads the configuration and the tokens (refusing to start without a
// good one), refuses to run as root, binds, and serves until SIGTERM/SIGINT; SIGHUP reloads the TLS
// certificate and key.
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/signal_set.hpp>

#include "common/log.h"
#include "common/port_ranges.h"
#include "common/version.h"
#include "http/api_config.h"
#include "http/auth.h"
#include "http/server.h"

extern char** environ;  // NOLINT: POSIX

namespace {

constexpr char kUsage[] =
    R"(usage: monkeyproof-api [--config FILE] [--listen ADDR[,ADDR...]] [--control-socket PATH]
                       [--token-file FILE] [--tls-listen ADDR[,ADDR...]]
       monkeyproof-api --version | --help

The unprivileged HTTP/WebSocket front end of MonkeyProof (docs/api.md). Reads FILE
(default /etc/monkeyproof/api.conf, optional), then the environment (PORT,
MONKEYPROOF_LISTEN, MONKEYPROOF_TLS_LISTEN, MONKEYPROOF_CONTROL_SOCKET, MONKEYPROOF_TOKEN,
AGENT_WS_TOKEN, MONKEYPROOF_TOKEN_FILE, CREDENTIALS_DIRECTORY), then these flags. Refuses
to start without a token of at least 32 characters, and refuses to run as root.
HTTPS on --tls-listen addresses needs tls_cert and tls_key in FILE; SIGHUP reads them
again (live connections stay; a bad new file keeps the old certificate, logged).
Listening sockets passed by systemd (LISTEN_FDS) are served: Unix stream ones (the
package's monkeyproof-api.socket) like listen_unix, which is then not bound; TCP ones
for the listen or tls_listen address they are bound to. Under systemd with NotifyAccess=
and FileDescriptorStoreMax= (the package's unit), each TCP listener bound here is kept in
systemd's fd store, so that a restart takes it back and the port is never free. Any
other passed descriptor is refused.
)";

int Fail(const std::string& message) {
  std::fprintf(stderr, "monkeyproof-api: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  mp::common::SetLogProgram("monkeyproof-api");
  std::string config_path = "/etc/monkeyproof/api.conf";
  bool config_given = false;
  std::string listen, control_socket, token_file, tls_listen;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "monkeyproof-api: %s needs a value\n%s", flag, kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--version") {
      std::printf("monkeyproof-api %s\n", mp::kVersion);
      return 0;
    } else if (a == "--config") {
      config_path = value("--config");
      config_given = true;
    } else if (a == "--listen") {
      listen = value("--listen");
    } else if (a == "--control-socket") {
      control_socket = value("--control-socket");
    } else if (a == "--token-file") {
      token_file = value("--token-file");
    } else if (a == "--tls-listen") {
      tls_listen = value("--tls-listen");
    } else {
      std::fprintf(stderr, "monkeyproof-api: unknown argument \"%s\"\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (::geteuid() == 0) {
    return Fail(
        "refusing to run as root: the API holds no privilege; run it as its own user "
        "(the package's unit uses monkeyproof-api)");
  }
  // Nothing this process starts may gain privilege (it starts nothing; this is a backstop).
  (void)::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);

  // First, before anything could start a thread or a child: the variables are unset here.
  auto inherited = mp::http::TakeInheritedSockets();
  if (!inherited) return Fail(inherited.error().ToString());
  if (!inherited->ignored.empty()) {
    mp::common::Log(mp::common::LogLevel::kWarning,
                    "socket activation: " + inherited->ignored + "; no socket taken from it");
  }

  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq != nullptr)
      env.emplace(std::string(*e, static_cast<size_t>(eq - *e)), std::string(eq + 1));
  }
  if (!listen.empty()) env["MONKEYPROOF_LISTEN"] = listen;
  if (!control_socket.empty()) env["MONKEYPROOF_CONTROL_SOCKET"] = control_socket;
  if (!token_file.empty()) env["MONKEYPROOF_TOKEN_FILE"] = token_file;
  if (!tls_listen.empty()) env["MONKEYPROOF_TLS_LISTEN"] = tls_listen;
  auto config = mp::http::LoadApiConfig(config_path, !config_given, env);
  if (!config) return Fail(config.error().ToString());
  if (mp::http::IncludesLoopback(config->trusted_proxies)) {
    mp::common::Log(mp::common::LogLevel::kWarning,
                    "trusted_proxies includes loopback: every local process (sessions with "
                    "\"network\": \"host\" too) can name any client in the forwarded header and is "
                    "exempt from the per-address limits; list loopback only when no "
                    "untrusted local user can reach this port (docs/deploy.md, section 4)");
  }
  auto tokens = mp::http::TokenSet::Load(config->tokens);
  if (!tokens) return Fail(tokens.error().ToString());
  // The token stays in this process only: it is not inherited by anything, not even by
  // accident through /proc/<pid>/environ of a child.
  ::unsetenv("MONKEYPROOF_TOKEN");
  ::unsetenv("AGENT_WS_TOKEN");
  std::signal(SIGPIPE, SIG_IGN);
  // A parent may have left SIGTERM/SIGINT blocked (exec keeps the mask): unblock what we wait for.
  sigset_t wanted;
  sigemptyset(&wanted);
  sigaddset(&wanted, SIGTERM);
  sigaddset(&wanted, SIGINT);
  sigaddset(&wanted, SIGHUP);
  sigprocmask(SIG_UNBLOCK, &wanted, nullptr);

  mp::http::Server server(std::move(*config), std::move(*tokens));
  server.Inherit(std::move(*inherited));
  if (auto notifier = mp::sd::Notifier::FromEnvironment(); !notifier) {
    mp::common::Log(mp::common::LogLevel::kWarning,
                    notifier.error().ToString() +
                        ": the TCP listeners are not kept in systemd's "
                        "fd store");
  } else if (notifier->has_value()) {
    server.KeepTcpListenersIn(std::move(**notifier));
  }
  if (auto started = server.Start(); !started) return Fail(started.error().ToString());
  boost::asio::signal_set signals(server.io(), SIGTERM, SIGINT);
  signals.async_wait([&server](boost::system::error_code, int) { server.Stop(); });
  boost::asio::signal_set hangup(server.io(), SIGHUP);
  std::function<void(boost::system::error_code, int)> on_hangup = [&](boost::system::error_code ec,
                                                                      int) {
    if (ec) return;
    if (auto reloaded = server.ReloadTls(); !reloaded) {
      mp::common::Log(mp::common::LogLevel::kError, reloaded.error().ToString());
    } else {
      mp::common::Log(mp::common::LogLevel::kInfo, "SIGHUP: TLS certificate and key reloaded");
    }
    hangup.async_wait(on_hangup);
  };
  hangup.async_wait(on_hangup);
  for (const auto& ep : server.endpoints()) {
    std::fprintf(stderr, "monkeyproof-api %s: listening on %s:%u\n", mp::kVersion,
                 ep.address().to_string().c_str(), ep.port());
  }
  for (const auto& [path, origin] : server.unix_sockets()) {
    std::fprintf(stderr, "monkeyproof-api %s: listening on unix:%s (%s)\n", mp::kVersion,
                 path.c_str(), origin.c_str());
  }
  const auto& store = server.context().token_store;
  std::fprintf(stderr, "monkeyproof-api: scoped tokens %s\n",
               store.enabled() ? ("kept in " + store.options().path).c_str()
                               : "disabled (no token_store in api.conf, no STATE_DIRECTORY)");
  for (const auto& ep : server.tls_endpoints()) {
    std::fprintf(stderr, "monkeyproof-api %s: listening with TLS on %s:%u\n", mp::kVersion,
                 ep.address().to_string().c_str(), ep.port());
  }
  // monkeyproofd's bind guard lets host-network sessions bind the ephemeral range, less the
  // reserved ports: a listen port there could be taken while this service restarts.
  std::vector<uint16_t> ports;
  for (const auto& ep : server.endpoints()) ports.push_back(ep.port());
  for (const auto& ep : server.tls_endpoints()) ports.push_back(ep.port());
  for (const std::string& warning : mp::common::SquattablePortWarnings(ports)) {
    mp::common::Log(mp::common::LogLevel::kWarning, warning);
  }
  server.Run();
  return 0;
}

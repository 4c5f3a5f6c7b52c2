// What every connection of monkeyproof-api shares: the configuration, the tokens (admin and
// scoped) and the auth-failure limiter, counters, the supervisor link, the session hub and the
// transcript index. Owned by the server (server.h); connections hold a reference. Runs on the
// io_context thread; not thread-safe beyond Metrics.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "http/api_audit.h"
#include "http/api_config.h"
#include "http/auth.h"
#include "http/client_principals.h"
#include "http/connection_limits.h"
#include "http/metrics.h"
#include "http/principal_connections.h"
#include "http/scoped_tokens.h"
#include "http/session_hub.h"
#include "http/supervisor_link.h"
#include "http/token_writer.h"
#include "http/transcript.h"

namespace mp::http {

// Shared: sessions and listeners hold a reference to it (keep_) so that it outlives the
// handlers still queued in the io_context when the Server goes away.
struct ApiContext : std::enable_shared_from_this<ApiContext> {
  ApiContext(boost::asio::io_context& io_in, ApiConfig config_in, TokenSet tokens_in)
      : io(io_in),
        config(std::move(config_in)),
        tokens(std::move(tokens_in)),
        token_writer(io_in),
        limiter(config.auth_failures_per_minute, std::chrono::seconds(60)),
        connection_limits(config.max_preauth_connections_per_address,
                          config.accept_rate_per_address, config.preauth_eviction),
        unix_limits(config.max_unix_connections_per_uid, /*rate_per_second=*/0,
                    config.preauth_eviction),
        principal_connections(config.max_connections_per_principal),
        link(io_in, config.control_socket, "monkeyproof-api"),
        hub(link, metrics),
        audit(io_in, link) {
    link.SetListener(&hub);
  }

  boost::asio::io_context& io;
  ApiConfig config;
  TokenSet tokens;
  TokenStore token_store;    // scoped tokens; opened by Server::Start (disabled until then)
  TokenWriter token_writer;  // writes token_store's changes on a thread of its own
  ClientPrincipals client_principals;  // tls_client_principals; loaded by Server::Start
  FailureLimiter limiter;
  // Per-address pre-auth limits, checked at accept; the register of unauthenticated connections.
  ConnectionLimits connection_limits;
  // The same for the Unix sockets, kept apart (no network connection evicts one of them): keyed
  // by peer uid ("uid=1000"), capped at max_unix_connections_per_uid, no rate; root's
  // connections are in it but exempt from the cap (HttpSession::Admit).
  ConnectionLimits unix_limits;
  // The peer uid of an accepted Unix connection (its fd). Null: SO_PEERCRED. Tests set it to
  // give their clients uids they cannot have without privilege.
  std::function<std::optional<uint32_t>(int fd)> unix_peer_uid;
  // Connections per scoped principal (max_connections_per_principal), WebSockets by token id.
  PrincipalConnections principal_connections;
  Metrics metrics;
  SupervisorLink link;
  SessionHub hub;
  ApiAudit audit;  // the API's own audit lines (refusals, reads, tokens), through `link`
  TranscriptIndex transcripts;  // transcript offset <-> output offset, for ?since=
  uint32_t connections = 0;     // open HTTP and WebSocket connections, against max_connections
};

// The OpenAPI document (docs/openapi.json), compiled in.
extern const char kOpenApiDocument[];

}  // namespace mp::http

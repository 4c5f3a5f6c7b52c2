// Configuration of monkeyproof-api: /etc/monkeyproof/api.conf (key = value, '#' comments, read
// by common/kv_config), then the environment, then command-line flags. Every key is described
// in docs/deploy.md and docs/api.md. Runs in monkeyproof-api at start. Not thread-safe; reads files
// and env only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/result.h"
#include "http/auth.h"
#include "http/client_address.h"
#include "http/scoped_tokens.h"

namespace mp::http {

struct ListenAddress {
  std::string host;  // "127.0.0.1", "::1", "0.0.0.0"; IPv6 without brackets
  uint16_t port = 0;
  friend bool operator==(const ListenAddress&, const ListenAddress&) = default;
};

// Client certificates on the TLS listeners (`tls_client_certs`).
enum class ClientCerts {
  kNone,      // not asked for (no tls_client_ca)
  kOptional,  // asked for; one that is sent must verify against tls_client_ca
  kRequired,  // a handshake without a verified certificate fails
};

// HTTPS on the addresses of `tls_listen`, with one certificate for all of them.
struct TlsConfig {
  std::vector<ListenAddress> listen;  // `tls_listen`: "a:p, [b]:p"; empty: no TLS
  std::string cert_file;              // `tls_cert`: PEM, the server certificate then its chain
  std::string key_file;               // `tls_key`: PEM private key of tls_cert
  std::string client_ca_file;         // `tls_client_ca`: PEM CAs that sign client certificates
  // `tls_client_certs` = none | optional | required; with tls_client_ca the default is required.
  ClientCerts client_certs = ClientCerts::kNone;
  // `tls_client_principals`: a JSON file mapping the CN of a verified client certificate to
  // "admin" or a scope (http/client_principals.h); empty: certificates authenticate nothing.
  std::string client_principals_file;
  friend bool operator==(const TlsConfig&, const TlsConfig&) = default;
};

// `listen_unix`: a Unix stream socket served like the TCP listeners (the same routes and token
// auth, plain HTTP): a way in for local operators that no network client can crowd out
// (http/unix_listener.h). For the non-systemd and development runs: under the package's unit
// the socket comes from monkeyproof-api.socket instead (http/listen_fds.h), which also wins
// when both are there.
struct UnixListenConfig {
  std::string path;      // `listen_unix`: absolute, at most 107 bytes; empty: none
  uint32_t mode = 0660;  // `listen_unix_mode`: octal; who may connect (write permission)
  std::string group;     // `listen_unix_group`: the socket file's group; empty: ours
  friend bool operator==(const UnixListenConfig&, const UnixListenConfig&) = default;
};

struct ApiConfig {
  std::vector<ListenAddress> listen = {{"127.0.0.1", 3200}};  // key `listen`: "a:p, [b]:p"
  std::string control_socket = "/run/monkeyproof/control.sock";
  // `token_file` (default kDefaultTokenFile, /etc/monkeyproof/api-token), env, credentials.
  TokenSources tokens = {std::string(kDefaultTokenFile), {}, {}};
  // A 1 MiB task (wire::kMaxTaskBytes) plus its JSON escapes and the other members.
  uint64_t body_limit_bytes = 1536 * 1024;
  uint32_t header_limit_bytes = 16 * 1024;
  // Until a connection has sent an authenticated request, its request line and headers must
  // arrive within this of its start (TLS handshake included) or of the previous answer; it
  // never idles. Afterwards: within this of a request's first byte.
  uint32_t header_timeout_ms = 10'000;
  uint32_t read_timeout_ms = 30'000;   // a request's body, from the end of its headers
  uint32_t idle_timeout_ms = 120'000;  // keep-alive connection with no request
  uint32_t max_connections = 1024;     // HTTP + WebSocket, all listeners
  // Per client address (IPv4, or IPv6 /64), trusted proxies exempt (connection_limits.h):
  // connections that have not yet sent an authenticated request, and new connections per
  // second (bursts of twice that). 0: no such limit.
  uint32_t max_preauth_connections_per_address = 128;
  uint32_t accept_rate_per_address = 100;
  // `preauth_eviction` = on | off: when the per-address or the global cap is full, the oldest
  // connection that has not authenticated is closed to admit the new one (on), or the new one
  // is refused with 503 (off: idle connections can then keep valid clients out).
  bool preauth_eviction = true;
  // Connections (HTTP keep-alive and WebSocket) one principal with a scope (a scoped token, a
  // certificate mapped to a scope) may hold at once; admin tokens and certificates are exempt
  // (max_connections bounds them). 0: no such cap.
  uint32_t max_connections_per_principal = 64;
  // Connections to the Unix socket (listen_unix, or the sockets systemd passed) one peer uid
  // (SO_PEERCRED) may hold before it has sent an authenticated request; one more closes the
  // uid's oldest such connection (preauth_eviction) or is refused with 503. Root is exempt.
  // 0: no such cap.
  uint32_t max_unix_connections_per_uid = 64;
  uint64_t ws_outbox_bytes = 1024 * 1024;
  uint64_t transcript_max_bytes = 4 * 1024 * 1024;
  uint32_t auth_failures_per_minute = 20;
  // A WebSocket upgrade without a credential must send {"type":"auth",...} within this.
  uint32_t ws_auth_timeout_ms = 10'000;
  // Scoped tokens (docs/api.md "Scoped tokens"). `token_store`: the file of their records
  // (hashes, scopes, expiry, revocation). Default: tokens.json in $STATE_DIRECTORY (the
  // package's unit sets StateDirectory=monkeyproof-api); empty: scoped tokens are disabled.
  std::string token_store;
  bool token_store_set = false;  // api.conf has the key (then STATE_DIRECTORY is not used)
  uint64_t token_max_ttl_seconds = kDefaultTokenMaxTtlSeconds;  // longest ttl a mint may ask
  uint64_t max_scoped_tokens = kDefaultMaxScopedTokens;         // live (unexpired, unrevoked)
  // `trusted_proxies`: peers whose report of the client address (`forwarded_header`) is
  // believed, "127.0.0.1, ::1, 10.0.0.0/8"; empty (the default): the TCP peer is the client.
  std::vector<IpNetwork> trusted_proxies;
  // `forwarded_header`: "x-forwarded-for" (default) or "forwarded" (RFC 7239): the one header
  // the proxies set. The other is ignored: a client could have written it.
  ForwardedHeader forwarded_header = ForwardedHeader::kXForwardedFor;
  TlsConfig tls;
  UnixListenConfig unix_socket;
};

// Parses `text` (the file's content; `origin` names it in errors: "api.conf:12: ...").
// Unknown keys, bad numbers (with units: plain bytes or K/M/G suffixes for *_bytes) and
// malformed addresses are errors naming the line and key; so are TLS settings that do not go
// together (CheckTlsConfig).
Result<ApiConfig> ParseApiConfig(std::string_view text, std::string_view origin);
// Reads the file (a missing file is fine when `optional`), then applies the environment:
// PORT (the original's: listen = 127.0.0.1:PORT), MONKEYPROOF_LISTEN, MONKEYPROOF_TLS_LISTEN
// (an empty value turns TLS listening off), MONKEYPROOF_CONTROL_SOCKET,
// MONKEYPROOF_TOKEN / AGENT_WS_TOKEN (token value), MONKEYPROOF_TOKEN_FILE,
// CREDENTIALS_DIRECTORY, MONKEYPROOF_TOKEN_STORE, and STATE_DIRECTORY (systemd; the default
// token_store is its tokens.json when the file sets none). `env` is the environment as a map (tests
// pass their own).
Result<ApiConfig> LoadApiConfig(const std::string& path, bool optional,
                                const std::map<std::string, std::string>& env);
// "127.0.0.1:3200", "[::1]:3200", "localhost:3200" (= 127.0.0.1:3200); ":3200" is refused (the
// host is required). Addresses are checked with inet_pton and stored as inet_ntop prints them.
Result<ListenAddress> ParseListenAddress(std::string_view text);
// tls_listen needs tls_cert and tls_key; those without tls_listen would secure nothing;
// tls_client_certs other than none needs tls_client_ca; no address is both plain and TLS. The
// files themselves are read when the server starts (http/tls.h).
Result<void> CheckTlsConfig(const ApiConfig& config);

}  // namespace mp::http

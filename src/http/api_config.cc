#include "http/api_config.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <optional>
#include <string_view>

#include "common/kv_config.h"

namespace mp::http {
namespace {

using common::kKiB;
using common::kMiB;
using common::ParseKvNumber;
using common::SizeText;

constexpr uint64_t kDayMs = 24ull * 60 * 60 * 1000;
// More listeners than this is a typo, not a deployment.
constexpr size_t kMaxListeners = 16;
// api.conf is a page of text; a bigger file is not one.
constexpr size_t kMaxConfigBytes = 1024 * 1024;

std::string_view Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

bool IsAbsolutePath(std::string_view p) { return !p.empty() && p.front() == '/'; }

Result<uint16_t> ParsePort(std::string_view s) {
  const std::optional<uint64_t> port = ParseKvNumber(s);
  if (!port || *port < 1 || *port > 65535) {
    return PlainError("port \"" + std::string(s) + "\" is not 1..65535");
  }
  return static_cast<uint16_t>(*port);
}

// "a:p, [b]:p" -> addresses; duplicates and empty items are errors.
Result<std::vector<ListenAddress>> ParseListenList(std::string_view text) {
  std::vector<ListenAddress> out;
  std::string_view rest = text;
  for (;;) {
    const size_t comma = rest.find(',');
    const std::string_view item = Trim(rest.substr(0, comma));
    if (item.empty()) return PlainError("empty address in the list");
    MP_TRY(ListenAddress a, ParseListenAddress(item));
    for (const ListenAddress& seen : out) {
      if (seen == a) return PlainError("\"" + std::string(item) + "\" is listed twice");
    }
    out.push_back(std::move(a));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  if (out.size() > kMaxListeners) {
    return PlainError("more than " + std::to_string(kMaxListeners) + " addresses");
  }
  return out;
}

const std::string* Find(const std::map<std::string, std::string>& env, const char* name) {
  const auto it = env.find(name);
  return it == env.end() ? nullptr : &it->second;
}

}  // namespace

Result<ListenAddress> ParseListenAddress(std::string_view text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  std::string host;
  std::string_view port_text;
  bool v6 = false;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return PlainError(quoted + ": missing ']'");
    host = std::string(text.substr(1, close - 1));
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      return PlainError(quoted + ": expected [address]:port");
    }
    port_text = text.substr(close + 2);
    v6 = true;
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return PlainError(quoted + ": expected address:port");
    host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return PlainError(quoted + ": an IPv6 address needs brackets, as in [::1]:3200");
    }
    if (host.empty()) {
      return PlainError(quoted + ": the address is required (0.0.0.0 or [::] for all)");
    }
    if (host == "localhost") host = "127.0.0.1";
  }
  auto port = ParsePort(port_text);
  if (!port) return std::move(port).error().Wrap(quoted);

  // inet_pton accepts only the strict forms (four decimal parts, no leading zeros in glibc);
  // the host is stored as inet_ntop prints it, so equal addresses compare equal.
  const int family = v6 ? AF_INET6 : AF_INET;
  unsigned char addr[sizeof(in6_addr)];
  if (host.empty() || ::inet_pton(family, host.c_str(), addr) != 1) {
    return PlainError(quoted + ": \"" + host + "\" is not an " + (v6 ? "IPv6" : "IPv4") +
                      " address");
  }
  char canonical[INET6_ADDRSTRLEN];
  if (::inet_ntop(family, addr, canonical, sizeof(canonical)) == nullptr) {
    const int err = errno;
    return ErrnoError(err, "inet_ntop(" + quoted + ")");
  }
  return ListenAddress{canonical, *port};
}

Result<void> CheckTlsConfig(const ApiConfig& c) {
  const TlsConfig& tls = c.tls;
  if (!tls.listen.empty() && (tls.cert_file.empty() || tls.key_file.empty())) {
    return PlainError(
        "tls_listen needs tls_cert and tls_key (PEM files readable by the API's user)");
  }
  if (tls.listen.empty() &&
      (!tls.cert_file.empty() || !tls.key_file.empty() || !tls.client_ca_file.empty())) {
    return PlainError(
        "tls_cert, tls_key or tls_client_ca is set but tls_listen is empty: no address would use "
        "them; add tls_listen = ADDRESS:PORT, or remove them");
  }
  if (tls.client_certs != ClientCerts::kNone && tls.client_ca_file.empty()) {
    return PlainError(
        "tls_client_certs needs tls_client_ca (the CA that signs client certificates)");
  }
  if (!tls.client_principals_file.empty() && tls.client_certs == ClientCerts::kNone) {
    return PlainError(
        "tls_client_principals maps client certificates, but none are asked for: set "
        "tls_client_ca (and tls_client_certs = optional or required)");
  }
  for (const ListenAddress& t : tls.listen) {
    for (const ListenAddress& p : c.listen) {
      if (t == p) {
        return PlainError((t.host.find(':') != std::string::npos ? "[" + t.host + "]" : t.host) +
                          ":" + std::to_string(t.port) +
                          " is in both listen and tls_listen; an address speaks one of them");
      }
    }
  }
  if (c.listen.size() + tls.listen.size() > kMaxListeners) {
    return PlainError("listen and tls_listen together have more than " +
                      std::to_string(kMaxListeners) + " addresses");
  }
  return Ok();
}

Result<ApiConfig> ParseApiConfig(std::string_view text, std::string_view origin) {
  ApiConfig c;
  bool client_certs_set = false;
  common::KvSchema schema;
  schema
      .Custom("listen",
              [&c](std::string_view value) -> Result<void> {
                MP_TRY(c.listen, ParseListenList(value));
                return Ok();
              })
      .Custom("listen_unix",
              [&c](std::string_view value) -> Result<void> {
                // sockaddr_un's sun_path holds 108 bytes with the terminating NUL.
                if (!value.empty() && (!IsAbsolutePath(value) || value.size() > 107)) {
                  return PlainError("\"" + std::string(value) +
                                    "\" is not an absolute path of at most 107 bytes");
                }
                c.unix_socket.path = std::string(value);
                return Ok();
              })
      .Custom("listen_unix_mode",
              [&c](std::string_view value) -> Result<void> {
                uint32_t mode = 0;
                bool ok = !value.empty() && value.size() <= 4;
                for (const char ch : value) {
                  ok = ok && ch >= '0' && ch <= '7';
                  mode = mode * 8 + static_cast<uint32_t>(ch - '0');
                }
                if (!ok || mode > 0777) {
                  return PlainError("\"" + std::string(value) +
                                    "\" is not an octal file mode such as 0660");
                }
                c.unix_socket.mode = mode;
                return Ok();
              })
      .Custom("listen_unix_group",
              [&c](std::string_view value) -> Result<void> {
                c.unix_socket.group = std::string(value);
                return Ok();
              })
      .Path("control_socket", &c.control_socket)
      // Empty: no token file (tokens come from the environment or a credential).
      .Path("token_file", &c.tokens.file, /*empty_ok=*/true)
      .Size("body_limit_bytes", &c.body_limit_bytes, kKiB, 64 * kMiB)
      .Size("header_limit_bytes", &c.header_limit_bytes, kKiB, kMiB)
      .Number("header_timeout_ms", &c.header_timeout_ms, 100, kDayMs)
      .Number("read_timeout_ms", &c.read_timeout_ms, 100, kDayMs)
      .Number("idle_timeout_ms", &c.idle_timeout_ms, 100, kDayMs)
      .Number("max_connections", &c.max_connections, 1, 100'000)
      .Number("max_preauth_connections_per_address", &c.max_preauth_connections_per_address, 0,
              100'000)
      .Number("accept_rate_per_address", &c.accept_rate_per_address, 0, 1'000'000)
      .Custom("preauth_eviction",
              [&c](std::string_view value) -> Result<void> {
                if (value != "on" && value != "off") {
                  return PlainError("\"" + std::string(value) + "\" is not on or off");
                }
                c.preauth_eviction = value == "on";
                return Ok();
              })
      .Number("max_connections_per_principal", &c.max_connections_per_principal, 0, 100'000)
      .Number("max_unix_connections_per_uid", &c.max_unix_connections_per_uid, 0, 100'000)
      .Size("ws_outbox_bytes", &c.ws_outbox_bytes, 64 * kKiB, 256 * kMiB)
      .Size("transcript_max_bytes", &c.transcript_max_bytes, 64 * kKiB, 256 * kMiB)
      .Number("auth_failures_per_minute", &c.auth_failures_per_minute, 1, 100'000)
      .Number("ws_auth_timeout_ms", &c.ws_auth_timeout_ms, 100, 600'000)
      // Empty: scoped tokens disabled.
      .Custom("token_store",
              [&c](std::string_view value) -> Result<void> {
                if (!value.empty() && !IsAbsolutePath(value)) {
                  return PlainError("\"" + std::string(value) + "\" is not an absolute path");
                }
                c.token_store = std::string(value);
                c.token_store_set = true;
                return Ok();
              })
      .Number("token_max_ttl_seconds", &c.token_max_ttl_seconds, 60, kLargestTokenMaxTtlSeconds)
      .Number("max_scoped_tokens", &c.max_scoped_tokens, 1, kLargestMaxScopedTokens)
      .Custom("trusted_proxies",
              [&c](std::string_view value) -> Result<void> {
                MP_TRY(c.trusted_proxies, ParseNetworkList(value));
                return Ok();
              })
      .Custom("forwarded_header",
              [&c](std::string_view value) -> Result<void> {
                std::string lower(value);
                for (char& ch : lower)
                  ch = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch + 32) : ch;
                if (lower == "x-forwarded-for") {
                  c.forwarded_header = ForwardedHeader::kXForwardedFor;
                } else if (lower == "forwarded") {
                  c.forwarded_header = ForwardedHeader::kForwarded;
                } else {
                  return PlainError(
                      "\"" + std::string(value) +
                      "\" is neither x-forwarded-for nor forwarded (the header your proxy "
                      "sets)");
                }
                return Ok();
              })
      .Custom("tls_listen",
              [&c](std::string_view value) -> Result<void> {
                MP_TRY(c.tls.listen, ParseListenList(value));
                return Ok();
              })
      .Path("tls_cert", &c.tls.cert_file)
      .Path("tls_key", &c.tls.key_file)
      .Path("tls_client_ca", &c.tls.client_ca_file)
      .Path("tls_client_principals", &c.tls.client_principals_file)
      .Custom("tls_client_certs", [&c, &client_certs_set](std::string_view value) -> Result<void> {
        if (value == "none") {
          c.tls.client_certs = ClientCerts::kNone;
        } else if (value == "optional") {
          c.tls.client_certs = ClientCerts::kOptional;
        } else if (value == "required") {
          c.tls.client_certs = ClientCerts::kRequired;
        } else {
          return PlainError("\"" + std::string(value) + "\" is not none, optional or required");
        }
        client_certs_set = true;
        return Ok();
      });
  MP_RETURN_IF_ERROR(schema.Parse(text, origin));
  // A client CA is there to be used: without a word on it, certificates are required.
  if (!client_certs_set && !c.tls.client_ca_file.empty()) {
    c.tls.client_certs = ClientCerts::kRequired;
  }
  if (auto checked = CheckTlsConfig(c); !checked) {
    return std::move(checked).error().Wrap(std::string(origin));
  }
  return c;
}

Result<ApiConfig> LoadApiConfig(const std::string& path, bool optional,
                                const std::map<std::string, std::string>& env) {
  MP_TRY(const std::string text, common::ReadConfigText(path, optional, kMaxConfigBytes));
  MP_TRY(ApiConfig c, ParseApiConfig(text, path));

  // The original's PORT first; MONKEYPROOF_LISTEN, more specific, wins when both are set.
  if (const std::string* v = Find(env, "PORT")) {
    const std::optional<uint64_t> port = ParseKvNumber(*v);
    if (!port || *port < 1 || *port > 65535) {
      return PlainError("environment PORT=\"" + *v + "\" is not a port (1..65535)");
    }
    c.listen = {{"127.0.0.1", static_cast<uint16_t>(*port)}};
  }
  if (const std::string* v = Find(env, "MONKEYPROOF_LISTEN")) {
    auto list = ParseListenList(Trim(*v));
    if (!list) return std::move(list).error().Wrap("environment MONKEYPROOF_LISTEN");
    c.listen = std::move(*list);
  }
  if (const std::string* v = Find(env, "MONKEYPROOF_TLS_LISTEN")) {
    if (Trim(*v).empty()) {
      c.tls = TlsConfig{};  // TLS off: its files are not needed
    } else {
      auto list = ParseListenList(Trim(*v));
      if (!list) return std::move(list).error().Wrap("environment MONKEYPROOF_TLS_LISTEN");
      c.tls.listen = std::move(*list);
    }
  }
  if (const std::string* v = Find(env, "MONKEYPROOF_CONTROL_SOCKET")) {
    if (!IsAbsolutePath(*v)) {
      return PlainError("environment MONKEYPROOF_CONTROL_SOCKET=\"" + *v +
                        "\" is not an absolute path");
    }
    c.control_socket = *v;
  }
  // The value is a secret: errors about it (in TokenSet::Load) never print it. An empty
  // variable counts as unset.
  const std::string* token = Find(env, "MONKEYPROOF_TOKEN");
  if (token == nullptr || token->empty()) token = Find(env, "AGENT_WS_TOKEN");
  if (token != nullptr && !token->empty()) c.tokens.env_value = *token;
  if (const std::string* v = Find(env, "MONKEYPROOF_TOKEN_FILE")) {
    if (!v->empty() && !IsAbsolutePath(*v)) {
      return PlainError("environment MONKEYPROOF_TOKEN_FILE=\"" + *v +
                        "\" is not an absolute path");
    }
    c.tokens.file = *v;  // empty: no token file
  }
  if (const std::string* v = Find(env, "CREDENTIALS_DIRECTORY"); v != nullptr && !v->empty()) {
    c.tokens.credential_dir = *v;
  }
  // systemd's StateDirectory= (one directory, or several separated by ':'; the first is ours)
  // gives scoped tokens a home when api.conf names none; an explicit key, even empty, wins.
  if (const std::string* v = Find(env, "STATE_DIRECTORY");
      v != nullptr && !v->empty() && !c.token_store_set) {
    const std::string dir = v->substr(0, v->find(':'));
    if (IsAbsolutePath(dir)) c.token_store = dir + "/tokens.json";
  }
  if (const std::string* v = Find(env, "MONKEYPROOF_TOKEN_STORE")) {
    if (!v->empty() && !IsAbsolutePath(*v)) {
      return PlainError("environment MONKEYPROOF_TOKEN_STORE=\"" + *v +
                        "\" is not an absolute path");
    }
    c.token_store = *v;  // empty: scoped tokens disabled
  }
  // PORT or MONKEYPROOF_LISTEN may now collide with tls_listen.
  if (auto checked = CheckTlsConfig(c); !checked) {
    return std::move(checked).error().Wrap("config \"" + path + "\" with the environment");
  }
  return c;
}

}  // namespace mp::http

// Where the `monkeyproof` client finds its server and token: the server URL, the config file
// (`key = value` lines), and the precedence flag > environment > config file > default.
// Runs in the CLI only. ParseServerUrl and ParseConfigFile are pure; ResolveConfig reads the
// config and token files it is pointed at (and nothing else). Not thread-safe per object.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/args.h"
#include "common/result.h"

namespace mp::cli {

inline constexpr std::string_view kDefaultUrl = "http://127.0.0.1:3200";
inline constexpr const char kEnvUrl[] = "MONKEYPROOF_URL";
inline constexpr const char kEnvToken[] = "MONKEYPROOF_TOKEN";
inline constexpr const char kEnvTokenFile[] = "MONKEYPROOF_TOKEN_FILE";
inline constexpr const char kEnvCaFile[] = "MONKEYPROOF_CA_FILE";
inline constexpr const char kEnvClientCert[] = "MONKEYPROOF_CLIENT_CERT";
inline constexpr const char kEnvClientKey[] = "MONKEYPROOF_CLIENT_KEY";

// A server address: `http[s]://HOST[:PORT][/PREFIX]`. HOST is a name, an IPv4 address or a
// bracketed IPv6 address. Routes are requested under PREFIX (a reverse proxy's sub-path).
struct ServerUrl {
  // `unix:/path`: the API's Unix socket (listen_unix), plain HTTP; host and port unused.
  std::string unix_path;
  bool https = false;  // TLS (ClientTls says whom to trust)
  std::string host;    // without brackets
  uint16_t port = 80;  // TCP port; 443 by default for https
  std::string prefix;  // "" or "/a/b": starts with '/', no trailing '/'

  // "http[s]://HOST:PORT/PREFIX" (IPv6 hosts in brackets) or "unix:/PATH", for messages.
  [[nodiscard]] std::string ToString() const;
  // The Host header: "HOST:PORT" (IPv6 hosts in brackets); "localhost" over a Unix socket.
  [[nodiscard]] std::string HostHeader() const;
  // prefix + path_and_query; `path_and_query` starts with '/'.
  [[nodiscard]] std::string Target(std::string_view path_and_query) const;
};

// Refuses other schemes (ws://, wss://: use http:// or https://), user:password@, queries,
// fragments, bad ports and empty hosts. "unix:/PATH" (absolute, at most 107 bytes) is the API's
// Unix socket.
Result<ServerUrl> ParseServerUrl(std::string_view text);

// TLS of an https:// server: the CAs the server's certificate must chain to, and the client's
// own certificate for servers that ask for one (mTLS). Paths; empty: not given.
struct ClientTls {
  std::string ca_file;    // PEM; empty: the system's CAs (/etc/ssl/certs)
  std::string cert_file;  // PEM client certificate (then its chain); needs key_file
  std::string key_file;   // its PEM private key, unencrypted
};

// The config file: `key = value` lines; `#` starts a comment line; blank lines are skipped;
// values may be wrapped in double quotes (common/kv_config reads the lines). Keys: url, token,
// token_file, ca_file, client_cert, client_key. An unknown key, a line without '=', a repeated key
// or an empty value is an error naming `path:line: key`.
struct ConfigFile {
  std::optional<std::string> url;
  std::optional<std::string> token;
  std::optional<std::string> token_file;
  std::optional<std::string> ca_file;
  std::optional<std::string> client_cert;
  std::optional<std::string> client_key;
};
Result<ConfigFile> ParseConfigFile(std::string_view text, std::string_view path);

// Reads an environment variable; nullopt when unset. Empty values count as unset.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;
// The process environment (getenv).
EnvLookup ProcessEnv();

// $XDG_CONFIG_HOME/monkeyproof/cli.conf when XDG_CONFIG_HOME is an absolute path, else
// $HOME/.config/monkeyproof/cli.conf; nullopt when neither variable helps.
std::optional<std::string> DefaultConfigPath(const EnvLookup& env);

struct ResolvedConfig {
  ServerUrl url;
  std::string url_source;    // "--url", "MONKEYPROOF_URL", "config file PATH", "default"
  std::string token;         // empty when no source gave one
  std::string token_source;  // e.g. "--token-file /x", "MONKEYPROOF_TOKEN"; empty when none
  ClientTls tls;             // for https:// URLs
  std::vector<std::string> warnings;  // for stderr, e.g. a world-readable file holding a token
};

// Applies flag > environment > config file > default to the URL and the token. At one level
// a token beats a token file (--token with --token-file is a usage error, caught in
// ParseArgs). A token file is read and trimmed of surrounding whitespace; a relative
// token_file in the config file is relative to the config file's directory. The default
// config file may be missing; one named by --config may not. The TLS files (flag >
// environment > config file, relative config paths as for token_file) are not read here; a
// client certificate without its key, or the reverse, is an error.
Result<ResolvedConfig> ResolveConfig(const GlobalOptions& flags, const EnvLookup& env);

}  // namespace mp::cli

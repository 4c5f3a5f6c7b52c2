#include "cli/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "common/kv_config.h"
#include "common/unique_fd.h"

namespace mp::cli {
namespace {

constexpr size_t kMaxFileBytes = size_t{1} << 20;  // config and token files are tiny

std::string_view Trim(std::string_view text) {
  const auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
  };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

bool IsHostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

bool IsIpv6Char(char c) {
  return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') || c == ':' ||
         c == '.';
}

struct FileRead {
  std::string contents;
  mode_t mode = 0;
};

// Reads a small regular file whole. errnum is the errno of the failing call (ENOENT matters to
// the caller: a missing default config file is fine).
Result<FileRead> ReadSmallFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return ErrnoError("open(" + path + ")");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("fstat(" + path + ")");
  if (!S_ISREG(st.st_mode)) return PlainError(path + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxFileBytes) {
    return PlainError(path + " is larger than 1 MiB");
  }
  FileRead out;
  out.mode = st.st_mode;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read(" + path + ")");
    }
    if (n == 0) break;
    out.contents.append(buf, static_cast<size_t>(n));
    if (out.contents.size() > kMaxFileBytes) return PlainError(path + " is larger than 1 MiB");
  }
  return out;
}

// A token goes into an HTTP header: printable ASCII without spaces only.
Result<void> CheckToken(std::string_view token, std::string_view source) {
  if (token.empty()) return PlainError("the token from " + std::string(source) + " is empty");
  for (const char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return PlainError("the token from " + std::string(source) +
                        " contains spaces, control or non-ASCII characters");
    }
  }
  return Ok();
}

Result<std::string> ReadTokenFile(const std::string& path, std::vector<std::string>& warnings) {
  MP_TRY(FileRead file, ReadSmallFile(path));
  if ((file.mode & S_IROTH) != 0) {
    warnings.push_back("token file " + path + " is readable by every user; chmod 600 " + path);
  }
  std::string token(Trim(file.contents));
  if (token.empty()) return PlainError("token file " + path + " is empty");
  return token;
}

std::string ExpandHome(const std::string& path, const EnvLookup& env) {
  if (path.rfind("~/", 0) != 0) return path;
  const std::optional<std::string> home = env("HOME");
  if (!home) return path;
  return *home + path.substr(1);
}

std::string Directory(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

std::string ServerUrl::ToString() const {
  if (!unix_path.empty()) return "unix:" + unix_path;
  return (https ? "https://" : "http://") + HostHeader() + prefix;
}

std::string ServerUrl::HostHeader() const {
  if (!unix_path.empty()) return "localhost";
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string ServerUrl::Target(std::string_view path_and_query) const {
  return prefix + std::string(path_and_query);
}

Result<ServerUrl> ParseServerUrl(std::string_view text) {
  const std::string shown = "'" + std::string(text) + "'";
  if (text.starts_with("unix:")) {
    const std::string_view path = text.substr(5);
    if (!path.starts_with('/') || path.size() > 107) {
      return PlainError(shown + ": expected unix:/PATH, an absolute path of at most 107 bytes");
    }
    for (const char c : path) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return PlainError(shown + ": control characters are not allowed");
      }
    }
    ServerUrl url;
    url.unix_path = std::string(path);
    return url;
  }
  const size_t scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    return PlainError(shown +
                      " is not a URL; expected http[s]://HOST[:PORT][/PREFIX] or unix:/PATH");
  }
  std::string scheme;
  for (const char c : text.substr(0, scheme_end)) {
    scheme += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  if (scheme != "http" && scheme != "https") {
    return PlainError(shown + ": unsupported scheme '" + scheme +
                      "'; use http:// or https:// (the client finds the WebSocket itself)");
  }
  std::string_view rest = text.substr(scheme_end + 3);
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return PlainError(shown + ": a server URL has no query or fragment");
  }
  for (const char c : rest) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return PlainError(shown + ": spaces and control characters are not allowed");
    }
  }
  const size_t path_start = rest.find('/');
  const std::string_view authority = rest.substr(0, path_start);
  std::string_view path =
      path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
  if (authority.find('@') != std::string_view::npos) {
    return PlainError(shown +
                      ": user:password@ is not supported; give the token with --token, "
                      "--token-file or MONKEYPROOF_TOKEN");
  }

  ServerUrl url;
  url.https = scheme == "https";
  url.port = url.https ? 443 : 80;
  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return PlainError(shown + ": missing ']' after IPv6 host");
    const std::string_view host = authority.substr(1, close - 1);
    for (const char c : host) {
      if (!IsIpv6Char(c)) return PlainError(shown + ": bad IPv6 address");
    }
    if (host.find(':') == std::string_view::npos) return PlainError(shown + ": bad IPv6 address");
    url.host = std::string(host);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return PlainError(shown + ": unexpected text after ']'");
      port_text = after.substr(1);
      has_port = true;
    }
  } else {
    const size_t colon = authority.find(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      has_port = true;
      if (port_text.find(':') != std::string_view::npos) {
        return PlainError(shown + ": put an IPv6 address in brackets, e.g. http://[::1]:3200");
      }
    }
    for (const char c : url.host) {
      if (!IsHostChar(c)) return PlainError(shown + ": bad character in host name");
    }
  }
  if (url.host.empty()) return PlainError(shown + ": no host");
  if (has_port) {
    const std::optional<uint64_t> port = ParseDecimal(port_text);
    if (!port || *port < 1 || *port > 65535) {
      return PlainError(shown + ": the port must be a number from 1 to 65535");
    }
    url.port = static_cast<uint16_t>(*port);
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  url.prefix = std::string(path);
  return url;
}

Result<ConfigFile> ParseConfigFile(std::string_view text, std::string_view path) {
  ConfigFile config;
  // Values may be wrapped in double quotes; an empty value is a mistake, not "unset".
  const auto optional_string = [](std::optional<std::string>* slot) {
    return [slot](std::string_view value) -> Result<void> {
      value = common::Unquote(value);
      if (value.empty()) return PlainError("empty value");
      *slot = std::string(value);
      return Ok();
    };
  };
  common::KvSchema schema;
  schema.Custom("url", optional_string(&config.url))
      .Custom("token", optional_string(&config.token))
      .Custom("token_file", optional_string(&config.token_file))
      .Custom("ca_file", optional_string(&config.ca_file))
      .Custom("client_cert", optional_string(&config.client_cert))
      .Custom("client_key", optional_string(&config.client_key));
  MP_RETURN_IF_ERROR(schema.Parse(text, path));
  return config;
}

EnvLookup ProcessEnv() {
  return [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): single-threaded
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::string(value);
  };
}

std::optional<std::string> DefaultConfigPath(const EnvLookup& env) {
  if (const std::optional<std::string> xdg = env("XDG_CONFIG_HOME"); xdg && xdg->front() == '/') {
    return *xdg + "/monkeyproof/cli.conf";
  }
  if (const std::optional<std::string> home = env("HOME")) {
    return *home + "/.config/monkeyproof/cli.conf";
  }
  return std::nullopt;
}

Result<ResolvedConfig> ResolveConfig(const GlobalOptions& flags, const EnvLookup& env) {
  ResolvedConfig out;

  ConfigFile config;
  std::string config_path;
  if (flags.config) {
    config_path = *flags.config;
  } else if (std::optional<std::string> path = DefaultConfigPath(env)) {
    config_path = std::move(*path);
  }
  if (!config_path.empty()) {
    Result<FileRead> file = ReadSmallFile(config_path);
    if (file) {
      MP_TRY(config, ParseConfigFile(file->contents, config_path));
      if (config.token && (file->mode & S_IROTH) != 0) {
        out.warnings.push_back("config file " + config_path +
                               " holds a token and is readable by every user; chmod 600 " +
                               config_path);
      }
    } else if (flags.config || file.error().errnum != ENOENT) {
      return Error{file.error().errnum, "config file: " + file.error().what};
    }
  }
  const std::string config_source = "config file " + config_path;

  std::string url_text;
  if (flags.url) {
    url_text = *flags.url;
    out.url_source = "--url";
  } else if (std::optional<std::string> value = env(kEnvUrl)) {
    url_text = std::move(*value);
    out.url_source = kEnvUrl;
  } else if (config.url) {
    url_text = *config.url;
    out.url_source = config_source;
  } else {
    url_text = std::string(kDefaultUrl);
    out.url_source = "default";
  }
  Result<ServerUrl> url = ParseServerUrl(url_text);
  if (!url) return std::move(url).error().Wrap(out.url_source);
  out.url = std::move(*url);

  if (flags.token) {
    out.token = *flags.token;
    out.token_source = "--token";
  } else if (flags.token_file) {
    MP_TRY(out.token, ReadTokenFile(*flags.token_file, out.warnings));
    out.token_source = "--token-file " + *flags.token_file;
  } else if (std::optional<std::string> token = env(kEnvToken)) {
    out.token = std::string(Trim(*token));
    out.token_source = kEnvToken;
  } else if (std::optional<std::string> file = env(kEnvTokenFile)) {
    MP_TRY(out.token, ReadTokenFile(*file, out.warnings));
    out.token_source = std::string(kEnvTokenFile) + " (" + *file + ")";
  } else if (config.token) {
    out.token = *config.token;
    out.token_source = config_source;
  } else if (config.token_file) {
    std::string path = ExpandHome(*config.token_file, env);
    if (path.front() != '/') path = Directory(config_path) + "/" + path;
    MP_TRY(out.token, ReadTokenFile(path, out.warnings));
    out.token_source = config_source + " (token_file " + path + ")";
  }
  if (!out.token_source.empty()) MP_RETURN_IF_ERROR(CheckToken(out.token, out.token_source));

  // TLS files: flag, environment, config file (relative to its directory); read on connect.
  const auto tls_path = [&](const std::optional<std::string>& flag, const char* env_name,
                            const std::optional<std::string>& in_config) -> std::string {
    if (flag) return *flag;
    if (std::optional<std::string> value = env(env_name)) return *value;
    if (!in_config) return "";
    std::string path = ExpandHome(*in_config, env);
    if (path.front() != '/') path = Directory(config_path) + "/" + path;
    return path;
  };
  out.tls.ca_file = tls_path(flags.ca_file, kEnvCaFile, config.ca_file);
  out.tls.cert_file = tls_path(flags.client_cert, kEnvClientCert, config.client_cert);
  out.tls.key_file = tls_path(flags.client_key, kEnvClientKey, config.client_key);
  if (out.tls.cert_file.empty() != out.tls.key_file.empty()) {
    return PlainError(out.tls.cert_file.empty()
                          ? "a client key is given without its certificate (--client-cert)"
                          : "a client certificate is given without its key (--client-key)");
  }
  if (!out.url.https && (!out.tls.ca_file.empty() || !out.tls.cert_file.empty())) {
    out.warnings.push_back("the CA file and client certificate are used with https:// URLs only; " +
                           out.url.ToString() + " is plain HTTP");
  }
  return out;
}

}  // namespace mp::cli

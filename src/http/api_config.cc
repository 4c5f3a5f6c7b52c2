#include "http/api_config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string_view>

#include "common/unique_fd.h"

namespace mp::http {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;
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

bool ParseU64(std::string_view s, uint64_t* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

// "1048576", "1024K", "1M", "1g": K/M/G are powers of 1024.
bool ParseSize(std::string_view s, uint64_t* out) {
  uint64_t mult = 1;
  if (!s.empty()) {
    switch (s.back()) {
      case 'K':
      case 'k':
        mult = kKiB;
        break;
      case 'M':
      case 'm':
        mult = kMiB;
        break;
      case 'G':
      case 'g':
        mult = kGiB;
        break;
      default:
        break;
    }
    if (mult != 1) s.remove_suffix(1);
  }
  uint64_t n = 0;
  if (!ParseU64(s, &n)) return false;
  if (n > UINT64_MAX / mult) return false;
  *out = n * mult;
  return true;
}

// 65536 -> "64K", 1048577 -> "1048577": the readable form of a limit in messages.
std::string SizeText(uint64_t n) {
  if (n != 0 && n % kGiB == 0) return std::to_string(n / kGiB) + "G";
  if (n != 0 && n % kMiB == 0) return std::to_string(n / kMiB) + "M";
  if (n != 0 && n % kKiB == 0) return std::to_string(n / kKiB) + "K";
  return std::to_string(n);
}

bool IsAbsolutePath(std::string_view p) { return !p.empty() && p.front() == '/'; }

Result<uint16_t> ParsePort(std::string_view s) {
  uint64_t port = 0;
  if (!ParseU64(s, &port) || port < 1 || port > 65535) {
    return PlainError("port \"" + std::string(s) + "\" is not 1..65535");
  }
  return static_cast<uint16_t>(port);
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

// A numeric key: where it is stored, its range, and whether it takes K/M/G.
struct NumberKey {
  const char* key;
  uint64_t* field64;  // exactly one of field64 / field32 is set
  uint32_t* field32;
  uint64_t min;
  uint64_t max;
  bool size;  // bytes: K/M/G suffixes allowed, range printed as sizes
};

Result<void> ApplyNumber(const NumberKey& k, std::string_view value) {
  uint64_t v = 0;
  if (k.size) {
    if (!ParseSize(value, &v)) {
      return PlainError("\"" + std::string(value) +
                        "\" is not a size (bytes, or a number with K, M or G)");
    }
  } else if (!ParseU64(value, &v)) {
    return PlainError("\"" + std::string(value) + "\" is not a number");
  }
  if (v < k.min || v > k.max) {
    const std::string range = k.size ? SizeText(k.min) + ".." + SizeText(k.max) + " bytes"
                                     : std::to_string(k.min) + ".." + std::to_string(k.max);
    return PlainError(std::string(value) + " is out of range (" + range + ")");
  }
  if (k.field64 != nullptr) {
    *k.field64 = v;
  } else {
    *k.field32 = static_cast<uint32_t>(v);
  }
  return Ok();
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

Result<ApiConfig> ParseApiConfig(std::string_view text, std::string_view origin) {
  ApiConfig c;
  const NumberKey numbers[] = {
      {"body_limit_bytes", &c.body_limit_bytes, nullptr, kKiB, 64 * kMiB, true},
      {"header_limit_bytes", nullptr, &c.header_limit_bytes, kKiB, kMiB, true},
      {"read_timeout_ms", nullptr, &c.read_timeout_ms, 100, kDayMs, false},
      {"idle_timeout_ms", nullptr, &c.idle_timeout_ms, 100, kDayMs, false},
      {"max_connections", nullptr, &c.max_connections, 1, 100'000, false},
      {"ws_outbox_bytes", &c.ws_outbox_bytes, nullptr, 64 * kKiB, 256 * kMiB, true},
      {"transcript_max_bytes", &c.transcript_max_bytes, nullptr, 64 * kKiB, 256 * kMiB, true},
      {"auth_failures_per_minute", nullptr, &c.auth_failures_per_minute, 1, 100'000, false},
  };
  std::map<std::string, int> seen;  // key -> line it was set on
  std::string_view rest = text;
  int lineno = 0;
  while (!rest.empty()) {
    ++lineno;
    const size_t nl = rest.find('\n');
    const std::string_view t = Trim(rest.substr(0, nl));
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (t.empty() || t[0] == '#') continue;
    const std::string where = std::string(origin) + ":" + std::to_string(lineno);
    const size_t eq = t.find('=');
    if (eq == std::string_view::npos) return PlainError(where + ": expected key = value");
    const std::string key(Trim(t.substr(0, eq)));
    const std::string_view value = Trim(t.substr(eq + 1));
    if (key.empty()) return PlainError(where + ": expected key = value");
    const std::string at = where + ": " + key;
    // A repeated key is a mistake (an edit that missed the first one), not an override.
    if (const auto [it, fresh] = seen.emplace(key, lineno); !fresh) {
      return PlainError(at + ": set twice (first on line " + std::to_string(it->second) + ")");
    }

    if (key == "listen") {
      auto list = ParseListenList(value);
      if (!list) return std::move(list).error().Wrap(at);
      c.listen = std::move(*list);
    } else if (key == "control_socket") {
      if (!IsAbsolutePath(value)) {
        return PlainError(at + ": \"" + std::string(value) + "\" is not an absolute path");
      }
      c.control_socket = value;
    } else if (key == "token_file") {
      // Empty: no token file (tokens come from the environment or a credential).
      if (!value.empty() && !IsAbsolutePath(value)) {
        return PlainError(at + ": \"" + std::string(value) + "\" is not an absolute path");
      }
      c.tokens.file = value;
    } else {
      const NumberKey* k = nullptr;
      for (const NumberKey& n : numbers) {
        if (key == n.key) k = &n;
      }
      if (k == nullptr) return PlainError(where + ": " + key + ": unknown key");
      if (auto ok = ApplyNumber(*k, value); !ok) return std::move(ok).error().Wrap(at);
    }
  }
  return c;
}

Result<ApiConfig> LoadApiConfig(const std::string& path, bool optional,
                                const std::map<std::string, std::string>& env) {
  std::string text;
  const std::string what = "config \"" + path + "\"";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    // errno is saved before the message is built: allocating it may change errno.
    const int err = errno;
    if (!(optional && err == ENOENT)) return ErrnoError(err, "open(" + what + ")");
  } else {
    char buf[8192];
    for (;;) {
      const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;  // EISDIR for a directory
        return ErrnoError(err, "read(" + what + ")");
      }
      if (n == 0) break;
      text.append(buf, static_cast<size_t>(n));
      if (text.size() > kMaxConfigBytes) {
        return PlainError(what + " is larger than " + SizeText(kMaxConfigBytes) + " bytes");
      }
    }
  }
  MP_TRY(ApiConfig c, ParseApiConfig(text, path));

  // The original's PORT first; MONKEYPROOF_LISTEN, more specific, wins when both are set.
  if (const std::string* v = Find(env, "PORT")) {
    uint64_t port = 0;
    if (!ParseU64(*v, &port) || port < 1 || port > 65535) {
      return PlainError("environment PORT=\"" + *v + "\" is not a port (1..65535)");
    }
    c.listen = {{"127.0.0.1", static_cast<uint16_t>(port)}};
  }
  if (const std::string* v = Find(env, "MONKEYPROOF_LISTEN")) {
    auto list = ParseListenList(Trim(*v));
    if (!list) return std::move(list).error().Wrap("environment MONKEYPROOF_LISTEN");
    c.listen = std::move(*list);
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
  return c;
}

}  // namespace mp::http

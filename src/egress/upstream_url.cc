// Gateway upstream URLs. See upstream_url.h.
#include "egress/upstream_url.h"

#include <optional>

#include "common/json_strict.h"
#include "egress/host_name.h"

namespace mp::egress {

using wire::QuoteForError;
namespace {

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 3986 pchar without '%' (checked apart) and '@' (kept out so that no part of an upstream
// URL reads as userinfo to a lenient parser).
bool IsPathChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':  // unreserved
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':  // sub-delims
    case '+':
    case ',':
    case ';':
    case '=':
    case ':':
      return true;
    default:
      return false;
  }
}

Result<std::string> CheckPath(std::string_view url, std::string_view path) {
  // `path` is "" or starts with '/'.
  if (path == "/") return std::string();
  if (!path.empty() && path.back() == '/') path.remove_suffix(1);
  size_t segment_start = 1;
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i < path.size() && path[i] != '/') {
      const char c = path[i];
      if (c == '%') {
        if (i + 2 >= path.size() || !IsHex(path[i + 1]) || !IsHex(path[i + 2])) {
          return PlainError("upstream URL " + QuoteForError(url) +
                            " has a '%' in its path that does not start a %HH escape");
        }
        i += 2;
        continue;
      }
      if (!IsPathChar(c)) {
        return PlainError("upstream URL " + QuoteForError(url) +
                          " has a character in its path that is not allowed there");
      }
      continue;
    }
    const std::string_view segment = path.substr(segment_start, i - segment_start);
    if (segment.empty() || segment == "." || segment == "..") {
      return PlainError("upstream URL " + QuoteForError(url) +
                        " has an empty, '.' or '..' segment in its path");
    }
    segment_start = i + 1;
  }
  return std::string(path);
}

}  // namespace

Result<UpstreamUrl> ParseUpstreamUrl(std::string_view url) {
  if (url.size() > kMaxUpstreamUrlBytes) {
    return PlainError("upstream URL of " + std::to_string(url.size()) + " bytes is longer than " +
                      std::to_string(kMaxUpstreamUrlBytes));
  }
  for (const char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return PlainError("upstream URL " + QuoteForError(url) +
                        " has a space, control or non-ASCII character");
    }
  }
  constexpr std::string_view kScheme = "https://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return PlainError("upstream URL " + QuoteForError(url) + " does not start with https://");
  }
  std::string_view rest = url.substr(kScheme.size());
  if (rest.find('?') != std::string_view::npos) {
    return PlainError("upstream URL " + QuoteForError(url) + " has a query ('?')");
  }
  if (rest.find('#') != std::string_view::npos) {
    return PlainError("upstream URL " + QuoteForError(url) + " has a fragment ('#')");
  }
  const size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const std::string_view path =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) {
    return PlainError("upstream URL " + QuoteForError(url) + " has userinfo ('@')");
  }
  if (authority.find('%') != std::string_view::npos) {
    return PlainError("upstream URL " + QuoteForError(url) + " has a '%' in its host");
  }
  if (authority.empty()) return PlainError("upstream URL " + QuoteForError(url) + " has no host");

  UpstreamUrl out;
  std::string_view host;
  std::optional<std::string_view> port;
  if (authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return PlainError("upstream URL " + QuoteForError(url) + " opens '[' without closing it");
    }
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return PlainError("upstream URL " + QuoteForError(url) +
                          " has text after ']' that is not :port");
      }
      port = after.substr(1);
    }
    const std::optional<std::string> address = CanonicalAddress(host);
    if (!address || host.find(':') == std::string_view::npos) {
      return PlainError("upstream URL " + QuoteForError(url) +
                        " has no IPv6 address inside '[...]'");
    }
    out.host = *address;
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string_view::npos &&
        authority.find(':', colon + 1) != std::string_view::npos) {
      return PlainError(
          "upstream URL " + QuoteForError(url) +
          " has more than one ':' in its authority (an IPv6 address goes in brackets: "
          "https://[address])");
    }
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    if (host.empty()) return PlainError("upstream URL " + QuoteForError(url) + " has no host");
    if (std::optional<std::string> address = CanonicalAddress(host)) {
      out.host = std::move(*address);
    } else {
      Result<std::string> name = NormalizeHostName(host);
      if (!name) return name.error().Wrap("upstream URL " + QuoteForError(url));
      out.host = std::move(*name);
    }
  }
  if (port) {
    const std::optional<uint16_t> number = ParsePort(*port);
    if (!number) {
      return PlainError("upstream URL " + QuoteForError(url) + " has port " + QuoteForError(*port) +
                        ", not a number from 1 to 65535");
    }
    out.port = *number;
  }
  Result<std::string> prefix = CheckPath(url, path);
  if (!prefix) return prefix.error();
  out.path_prefix = std::move(*prefix);
  return out;
}

std::string UpstreamHostHeader(const UpstreamUrl& url) {
  std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  if (url.port != 443) host += ":" + std::to_string(url.port);
  return host;
}

std::string UpstreamUrlText(const UpstreamUrl& url) {
  return "https://" + UpstreamHostHeader(url) + url.path_prefix;
}

}  // namespace mp::egress

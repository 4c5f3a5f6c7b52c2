// Proxy request targets. See proxy_request.h.
#include "egress/proxy_request.h"

#include <algorithm>

#include "common/json_strict.h"

namespace mp::egress {
namespace {

using wire::QuoteForError;

constexpr std::string_view kHttpScheme = "http://";

// Whether `text` starts with `prefix` (lower case), ignoring ASCII case.
bool StartsWithNoCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), text.begin(), [](char lower, char c) {
           return (c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c) == lower;
         });
}

// "host", "host:port", "[v6]", "[v6]:port" with `default_port` when none is given.
Result<Authority> ParseHostAndPort(std::string_view text, uint16_t default_port) {
  const size_t bracket = text.rfind(']');
  const size_t colon = text.rfind(':');
  const bool has_port = colon != std::string_view::npos &&
                        (bracket == std::string_view::npos || colon > bracket) &&
                        (text.front() == '[' || text.find(':') == colon);
  if (has_port) return ParseAuthority(text);
  return ParseAuthority(std::string(text) + ":" + std::to_string(default_port));
}

}  // namespace

Result<ProxyTarget> ParseProxyTarget(std::string_view method, std::string_view target,
                                     std::optional<std::string_view> host) {
  ProxyTarget out;
  if (method == "CONNECT") {
    Result<Authority> authority = ParseAuthority(target);
    if (!authority) return authority.error().Wrap("CONNECT target");
    out.destination = std::move(*authority);
    out.tunnel = true;
    return out;
  }
  if (!StartsWithNoCase(target, kHttpScheme)) {
    if (StartsWithNoCase(target, "https://")) {
      return PlainError("request target " + QuoteForError(target) +
                        ": an https:// URL goes through CONNECT, not a plain request");
    }
    return PlainError("request target " + QuoteForError(target) +
                      " is not an absolute http:// URL: this is a proxy (set HTTP_PROXY and "
                      "request the full URL)");
  }
  std::string_view rest = target.substr(kHttpScheme.size());
  const size_t path_start = rest.find_first_of("/?#");
  const std::string_view authority_text = rest.substr(0, path_start);
  std::string_view path =
      path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
  if (authority_text.find('@') != std::string_view::npos) {
    return PlainError("request target " + QuoteForError(target) +
                      " has user information before the host: send credentials in headers");
  }
  if (path.find('#') != std::string_view::npos) {
    return PlainError("request target " + QuoteForError(target) + " has a fragment ('#')");
  }
  if (authority_text.empty()) {
    return PlainError("request target " + QuoteForError(target) + " has no host");
  }
  Result<Authority> destination = ParseHostAndPort(authority_text, 80);
  if (!destination) return destination.error().Wrap("request target");
  if (host) {
    Result<Authority> named = ParseHostAndPort(*host, 80);
    if (!named || !(*named == *destination)) {
      return PlainError("Host header " + QuoteForError(*host) + " names another destination than " +
                        destination->ToString() + " in the request URL");
    }
  }
  out.destination = std::move(*destination);
  out.origin_form =
      path.empty() ? "/" : (path.front() == '?' ? "/" + std::string(path) : std::string(path));
  return out;
}

}  // namespace mp::egress

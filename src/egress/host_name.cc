// Canonical host names, addresses and authorities. See host_name.h.
#include "egress/host_name.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "common/json_strict.h"

namespace mp::egress {

using wire::QuoteForError;
namespace {

bool IsLdh(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

Result<std::string> NormalizeHostName(std::string_view text) {
  std::string name(text);
  if (!name.empty() && name.back() == '.') name.pop_back();
  if (name.empty()) return PlainError("empty host name");
  if (name.size() > kMaxHostNameLength) {
    return PlainError("host name " + QuoteForError(text) + " is longer than 253 characters");
  }
  std::transform(name.begin(), name.end(), name.begin(), Lower);
  size_t label_start = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i < name.size() && name[i] != '.') {
      const auto c = static_cast<unsigned char>(name[i]);
      if (c >= 0x80) {
        return PlainError("host name " + QuoteForError(text) +
                          " is not ASCII: write an internationalised name in its punycode "
                          "(xn--) form");
      }
      if (!IsLdh(name[i])) {
        return PlainError("host name " + QuoteForError(text) +
                          " has a character other than letters, digits, '-' and '.'");
      }
      continue;
    }
    const std::string_view label = std::string_view(name).substr(label_start, i - label_start);
    if (label.empty())
      return PlainError("host name " + QuoteForError(text) + " has an empty label");
    if (label.size() > kMaxLabelLength) {
      return PlainError("host name " + QuoteForError(text) + " has a label over 63 characters");
    }
    if (label.front() == '-' || label.back() == '-') {
      return PlainError("host name " + QuoteForError(text) +
                        " has a label that starts or ends with '-'");
    }
    if (i == name.size() &&
        std::all_of(label.begin(), label.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return PlainError("host name " + QuoteForError(text) +
                        " ends in a numeric label: write an address in its full dotted form");
    }
    label_start = i + 1;
  }
  return name;
}

std::optional<std::string> CanonicalAddress(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
  const std::string copy(text);  // inet_pton wants a terminated string
  std::array<unsigned char, 16> bytes{};
  std::array<char, INET6_ADDRSTRLEN> out{};
  if (inet_pton(AF_INET, copy.c_str(), bytes.data()) == 1) {
    return std::string(inet_ntop(AF_INET, bytes.data(), out.data(), out.size()));
  }
  if (inet_pton(AF_INET6, copy.c_str(), bytes.data()) != 1) return std::nullopt;
  static constexpr std::array<unsigned char, 12> kMapped = {0, 0, 0, 0, 0,    0,
                                                            0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(kMapped.begin(), kMapped.end(), bytes.begin())) {
    return std::string(inet_ntop(AF_INET, bytes.data() + 12, out.data(), out.size()));
  }
  return std::string(inet_ntop(AF_INET6, bytes.data(), out.data(), out.size()));
}

std::string Authority::ToString() const {
  const bool bracket = is_address && host.find(':') != std::string::npos;
  return (bracket ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<uint16_t> ParsePort(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  uint32_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value == 0 || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

Result<Authority> ParseAuthority(std::string_view text) {
  Authority a;
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return PlainError("authority " + QuoteForError(text) + " opens '[' without closing it");
    }
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return PlainError("authority " + QuoteForError(text) + " has no port: write [address]:port");
    }
    port = rest.substr(1);
    const std::optional<std::string> address = CanonicalAddress(host);
    if (!address || host.find(':') == std::string_view::npos) {
      return PlainError("authority " + QuoteForError(text) + " has no IPv6 address inside '[...]'");
    }
    a.host = *address;
    a.is_address = true;
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return PlainError("authority " + QuoteForError(text) + " has no port: write host:port");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return PlainError("authority " + QuoteForError(text) +
                        " has an IPv6 address without brackets: write [address]:port");
    }
    if (const std::optional<std::string> address = CanonicalAddress(host)) {
      a.host = *address;
      a.is_address = true;
    } else {
      Result<std::string> name = NormalizeHostName(host);
      if (!name) return name.error().Wrap("authority " + QuoteForError(text));
      a.host = std::move(*name);
    }
  }
  const std::optional<uint16_t> number = ParsePort(port);
  if (!number) {
    return PlainError("authority " + QuoteForError(text) + " has port " + QuoteForError(port) +
                      ", not a number from 1 to 65535");
  }
  a.port = *number;
  return a;
}

}  // namespace mp::egress

#include "http/client_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace mp::http {
namespace {

constexpr size_t kMaxObfuscatedChars = 64;

bool IsOws(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// RFC 7230 tchar.
bool IsTchar(char c) {
  return IsAlpha(c) || IsDigit(c) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char ch) {
             return (ch >= 'A' && ch <= 'Z') ? char(ch - 'A' + 'a') : ch;
           };
           return lower(x) == lower(y);
         });
}

// RFC 7239 obfnode / obfport: "_" 1*(ALPHA / DIGIT / "." / "_" / "-").
bool IsObfuscated(std::string_view s) {
  if (s.size() < 2 || s.size() > kMaxObfuscatedChars || s.front() != '_') return false;
  return std::all_of(s.begin() + 1, s.end(), [](char c) {
    return IsAlpha(c) || IsDigit(c) || c == '.' || c == '_' || c == '-';
  });
}

bool IsPort(std::string_view s, bool allow_obfuscated) {
  if (allow_obfuscated && IsObfuscated(s)) return true;
  return !s.empty() && s.size() <= 5 && std::all_of(s.begin(), s.end(), IsDigit);
}

ForwardedHop Unknown() { return ForwardedHop{}; }

ForwardedHop Address(const IpAddress& a) {
  ForwardedHop h;
  h.kind = ForwardedHop::Kind::kAddress;
  h.address = a;
  return h;
}

// One node: "192.0.2.1", "192.0.2.1:80", "[2001:db8::1]", "[2001:db8::1]:80", "unknown",
// "_hidden", "_hidden:_port" (obfuscated ports only in Forwarded); in X-Forwarded-For also a
// bare IPv6 address ("2001:db8::1", its usual form). Anything else is kUnknown.
ForwardedHop ParseNode(std::string_view node, bool forwarded) {
  std::string_view name = node;
  std::string_view port;
  bool bracketed = false;
  if (!node.empty() && node.front() == '[') {
    const size_t close = node.find(']');
    if (close == std::string_view::npos) return Unknown();
    name = node.substr(1, close - 1);
    bracketed = true;
    const std::string_view rest = node.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return Unknown();
      port = rest.substr(1);
      if (!IsPort(port, forwarded)) return Unknown();
    }
  } else {
    const size_t colons = static_cast<size_t>(std::count(node.begin(), node.end(), ':'));
    if (colons == 1) {
      const size_t colon = node.find(':');
      name = node.substr(0, colon);
      port = node.substr(colon + 1);
      if (!IsPort(port, forwarded)) return Unknown();
    } else if (colons > 1 && forwarded) {
      return Unknown();  // RFC 7239 requires brackets around an IPv6 address
    }
  }
  if (!bracketed && IsObfuscated(name)) {
    ForwardedHop h;
    h.kind = ForwardedHop::Kind::kObfuscated;
    h.obfuscated = std::string(name);
    return h;
  }
  const auto a = ParseIpAddress(name);
  if (!a) return Unknown();
  // Brackets go with IPv6 only; "[192.0.2.1]" is not a form any proxy writes.
  if (bracketed && !a->v6 && name.find(':') == std::string_view::npos) return Unknown();
  return Address(*a);
}

void KeepRightmost(std::vector<ForwardedHop>* hops) {
  if (hops->size() > kMaxForwardedHops) {
    hops->erase(hops->begin(), hops->end() - static_cast<std::ptrdiff_t>(kMaxForwardedHops));
  }
}

// Parses one Forwarded field value into `out`. Returns false when it is malformed (the
// caller then ends the list with a kUnknown hop).
bool ParseForwardedValue(std::string_view v, std::vector<ForwardedHop>* out) {
  size_t i = 0;
  const size_t n = v.size();
  auto skip_ows = [&] {
    while (i < n && IsOws(v[i])) ++i;
  };
  for (;;) {
    // One element: pairs separated by ';'. Empty elements (", ,") are allowed by the list rule.
    std::optional<ForwardedHop> hop;
    bool seen_for = false;
    bool element_empty = true;
    for (;;) {
      skip_ows();
      if (i >= n || v[i] == ',' || v[i] == ';') {
        if (i < n && v[i] == ';') {
          ++i;
          continue;
        }
        break;
      }
      element_empty = false;
      const size_t name_start = i;
      while (i < n && IsTchar(v[i])) ++i;
      const std::string_view name = v.substr(name_start, i - name_start);
      if (name.empty() || i >= n || v[i] != '=') return false;
      ++i;
      std::string value;
      if (i < n && v[i] == '"') {
        ++i;
        bool closed = false;
        while (i < n) {
          const char c = v[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\') {
            if (i >= n) return false;
            value.push_back(v[i++]);
          } else {
            value.push_back(c);
          }
          if (value.size() > 256) return false;  // no node is this long
        }
        if (!closed) return false;
      } else {
        const size_t value_start = i;
        while (i < n && v[i] != ';' && v[i] != ',' && !IsOws(v[i]) && v[i] != '"') ++i;
        value = std::string(v.substr(value_start, i - value_start));
        if (value.empty()) return false;
      }
      skip_ows();
      if (i < n && v[i] != ';' && v[i] != ',') return false;
      if (EqualsIgnoreCase(name, "for")) {
        // A parameter appears at most once per element (RFC 7239 section 4).
        if (seen_for) return false;
        seen_for = true;
        hop = ParseNode(value, /*forwarded=*/true);
      }
    }
    if (!element_empty) out->push_back(hop.value_or(Unknown()));
    if (i >= n) return true;
    ++i;  // the ','
  }
}

}  // namespace

std::string IpAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (::inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), text, sizeof(text)) == nullptr) {
    return "invalid";
  }
  return text;
}

std::string AddressKey(const IpAddress& a) {
  if (!a.v6) return a.ToString();
  IpAddress net = a;
  std::fill(net.bytes.begin() + 8, net.bytes.end(), uint8_t{0});
  return net.ToString() + "/64";
}

std::string AddressKey(std::string_view text) {
  const std::optional<IpAddress> a = ParseIpAddress(text);
  return a ? AddressKey(*a) : std::string(text);
}

std::optional<IpAddress> ParseIpAddress(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  const std::string s(text);
  IpAddress a;
  if (::inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) return a;
  if (::inet_pton(AF_INET6, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a.bytes.data(), kMapped, sizeof(kMapped)) == 0) {
    IpAddress v4;
    std::memcpy(v4.bytes.data(), a.bytes.data() + 12, 4);
    return v4;
  }
  a.v6 = true;
  return a;
}

bool IpNetwork::Contains(const IpAddress& a) const {
  if (a.v6 != base.v6) return false;
  const uint32_t full = prefix / 8;
  if (std::memcmp(a.bytes.data(), base.bytes.data(), full) != 0) return false;
  const uint32_t bits = prefix % 8;
  if (bits == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - bits));
  return (a.bytes[full] & mask) == (base.bytes[full] & mask);
}

bool InNetworks(const IpAddress& a, const std::vector<IpNetwork>& networks) {
  return std::any_of(networks.begin(), networks.end(),
                     [&](const IpNetwork& n) { return n.Contains(a); });
}

bool IncludesLoopback(const std::vector<IpNetwork>& networks) {
  const IpAddress v4 = *ParseIpAddress("127.0.0.1");
  const IpAddress v6 = *ParseIpAddress("::1");
  return std::any_of(networks.begin(), networks.end(), [&](const IpNetwork& n) {
    return n.Contains(v4) || n.Contains(v6) || (!n.base.v6 && n.base.bytes[0] == 127);
  });
}

Result<std::vector<IpNetwork>> ParseNetworkList(std::string_view text) {
  std::vector<IpNetwork> out;
  if (TrimOws(text).empty()) return out;
  std::string_view rest = text;
  for (;;) {
    const size_t comma = rest.find(',');
    const std::string_view item = TrimOws(rest.substr(0, comma));
    const std::string quoted = "\"" + std::string(item) + "\"";
    if (item.empty()) return PlainError("empty item in the address list");
    const size_t slash = item.find('/');
    const auto a = ParseIpAddress(item.substr(0, slash));
    if (!a) {
      return PlainError(quoted + ": not an IPv4 or IPv6 address (a network is address/bits)");
    }
    const uint32_t max_bits = a->v6 ? 128 : 32;
    uint32_t bits = max_bits;
    if (slash != std::string_view::npos) {
      const std::string_view b = item.substr(slash + 1);
      if (b.empty() || b.size() > 3 || !std::all_of(b.begin(), b.end(), IsDigit)) {
        return PlainError(quoted + ": the prefix length is not a number");
      }
      bits = static_cast<uint32_t>(std::stoul(std::string(b)));
      if (bits > max_bits) {
        return PlainError(quoted + ": the prefix length is over " + std::to_string(max_bits));
      }
    }
    IpNetwork net{*a, bits};
    IpNetwork cleared = net;
    for (uint32_t bit = bits; bit < 128; ++bit) {
      cleared.base.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    }
    if (cleared.base != net.base) {
      return PlainError(quoted + ": host bits are set below the prefix; write " +
                        cleared.base.ToString() + "/" + std::to_string(bits));
    }
    out.push_back(net);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

std::vector<ForwardedHop> ParseXForwardedFor(const std::vector<std::string_view>& values) {
  std::vector<ForwardedHop> hops;
  for (const std::string_view value : values) {
    std::string_view rest = value;
    for (;;) {
      const size_t comma = rest.find(',');
      const std::string_view item = TrimOws(rest.substr(0, comma));
      // Empty items (", ,") are no hop; everything else is one, believable or not.
      if (!item.empty()) hops.push_back(ParseNode(item, /*forwarded=*/false));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  KeepRightmost(&hops);
  return hops;
}

std::vector<ForwardedHop> ParseForwarded(const std::vector<std::string_view>& values) {
  std::vector<ForwardedHop> hops;
  for (const std::string_view value : values) {
    if (!ParseForwardedValue(value, &hops)) {
      // What follows the error cannot be read; nothing left of it can be believed either,
      // since the walk from the right stops here.
      hops.push_back(Unknown());
    }
  }
  KeepRightmost(&hops);
  return hops;
}

std::string ResolveClientAddress(const IpAddress& peer, const std::vector<ForwardedHop>& hops,
                                 const std::vector<IpNetwork>& trusted) {
  auto is_trusted = [&](const IpAddress& a) { return InNetworks(a, trusted); };
  IpAddress reporter = peer;
  if (!is_trusted(reporter)) return reporter.ToString();
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    switch (it->kind) {
      case ForwardedHop::Kind::kUnknown:
        return reporter.ToString();
      case ForwardedHop::Kind::kObfuscated:
        return it->obfuscated;
      case ForwardedHop::Kind::kAddress:
        if (!is_trusted(it->address)) return it->address.ToString();
        reporter = it->address;
        break;
    }
  }
  return reporter.ToString();
}

std::string ClientAddressOf(const IpAddress& peer, ForwardedHeader header,
                            const std::vector<std::string_view>& values,
                            const std::vector<IpNetwork>& trusted) {
  if (!InNetworks(peer, trusted)) return peer.ToString();
  return ResolveClientAddress(
      peer,
      header == ForwardedHeader::kForwarded ? ParseForwarded(values) : ParseXForwardedFor(values),
      trusted);
}

}  // namespace mp::http

// libFuzzer target for the client address behind trusted proxies (src/http/client_address.h):
// X-Forwarded-For and Forwarded (RFC 7239) values, and the `trusted_proxies` list. The first
// byte's low nibble picks the parser ('0' X-Forwarded-For, '1' Forwarded, '2' the network
// list in the corpus); for the headers the rest is split at '\n' into header lines. Besides
// "no crash, no sanitizer report", each branch checks an invariant and aborts when it fails:
// at most kMaxForwardedHops hops, every address hop prints as text that parses back to it,
// obfuscated identifiers are RFC 7239 obfnodes, the walk never invents an address (it is the
// peer or one of the hops) and an untrusted peer is never overridden; an accepted network has
// no host bits and contains its own base. Built with -fsanitize=fuzzer under the `fuzz`
// preset; the normal build replays tests/fuzz/corpus/forwarded (fuzz_replay.forwarded).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "http/client_address.h"

namespace {

namespace http = mp::http;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "forwarded_fuzz: %s\n", what);
  std::abort();
}

void Check(bool ok, const char* what) {
  if (!ok) Die(what);
}

std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> out;
  for (;;) {
    const size_t nl = text.find('\n');
    out.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) return out;
    text.remove_prefix(nl + 1);
  }
}

bool IsObfnode(const std::string& s) {
  return s.size() >= 2 && s.size() <= 64 && s[0] == '_' &&
         std::all_of(s.begin() + 1, s.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
         });
}

void FuzzHeader(std::string_view text, http::ForwardedHeader which) {
  const auto values = Lines(text);
  const auto hops = which == http::ForwardedHeader::kForwarded ? http::ParseForwarded(values)
                                                               : http::ParseXForwardedFor(values);
  Check(hops.size() <= http::kMaxForwardedHops, "too many hops");
  for (const auto& h : hops) {
    if (h.kind == http::ForwardedHop::Kind::kAddress) {
      const auto back = http::ParseIpAddress(h.address.ToString());
      Check(back.has_value() && *back == h.address, "an address that does not print back");
    } else if (h.kind == http::ForwardedHop::Kind::kObfuscated) {
      Check(IsObfnode(h.obfuscated), "an obfuscated identifier that is not an obfnode");
    }
  }
  static const auto trusted = *http::ParseNetworkList("127.0.0.0/8, 10.0.0.0/8, ::1");
  const auto peer = *http::ParseIpAddress("127.0.0.1");
  const std::string client = http::ResolveClientAddress(peer, hops, trusted);
  bool known = client == peer.ToString();
  for (const auto& h : hops) {
    known = known ||
            (h.kind == http::ForwardedHop::Kind::kAddress && client == h.address.ToString()) ||
            (h.kind == http::ForwardedHop::Kind::kObfuscated && client == h.obfuscated);
  }
  Check(known, "the walk invented a client address");
  // The limiters' key for whatever the walk chose (an IPv6 client counts by its /64): a key is
  // its own key, so a key never splits into two counters.
  const std::string key = http::AddressKey(client);
  Check(http::AddressKey(key) == key, "an address key that is not its own key");
  Check(http::ClientAddressOf(peer, which, values, trusted) == client, "ClientAddressOf differs");
  const auto outsider = *http::ParseIpAddress("203.0.113.9");
  Check(http::ClientAddressOf(outsider, which, values, trusted) == "203.0.113.9",
        "an untrusted peer was overridden");
}

void FuzzNetworks(std::string_view text) {
  const auto nets = http::ParseNetworkList(text);
  if (!nets) {
    Check(!nets.error().what.empty(), "an empty error");
    return;
  }
  for (const auto& n : *nets) {
    Check(n.prefix <= (n.base.v6 ? 128u : 32u), "prefix out of range");
    Check(n.Contains(n.base), "a network without its base");
    const auto back = http::ParseNetworkList(n.base.ToString() + "/" + std::to_string(n.prefix));
    Check(back.has_value() && back->size() == 1 && (*back)[0].base == n.base,
          "a network that does not print back");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] & 0x0f) {
    case 0:
      FuzzHeader(text, http::ForwardedHeader::kXForwardedFor);
      break;
    case 1:
      FuzzHeader(text, http::ForwardedHeader::kForwarded);
      break;
    case 2:
      FuzzNetworks(text);
      break;
    default:
      break;
  }
  return 0;
}

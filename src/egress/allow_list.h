// A session's egress allowlist (issue 14): the `allow` entries of a policy's
// `"network": {"mode": "allowlist", "allow": [...]}`, validated once at policy load into an
// immutable AllowList that the egress gateway asks for every connection. Entries:
//   "api.anthropic.com:443"       that name, that port
//   "*.githubusercontent.com:443" every name that ends in ".githubusercontent.com", at any
//                                 depth; not "githubusercontent.com" itself (list it too)
//   "10.0.0.5:5432", "[fd00::5]:443"  that address; the only way to reach a loopback,
//                                 private, link-local or metadata address (names never
//                                 resolve to one through the gateway)
// Case and one trailing dot are folded; the port is required; a bare "*", a wildcard anywhere
// but the whole first label, and a wildcard over a single label ("*.com") are errors. Pure; the
// entries come from policy files (fuzzed: tests/fuzz/egress_fuzz.cc). Thread-safe once built.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "egress/host_name.h"

namespace mp::egress {

struct AllowRule {
  enum class Kind { kName, kSubdomains, kAddress };
  Kind kind = Kind::kName;
  std::string host;  // the name; for kSubdomains the suffix after "*."; the canonical address
  uint16_t port = 0;
  friend bool operator==(const AllowRule&, const AllowRule&) = default;
  // The entry in canonical form: "api.example.com:443", "*.example.com:443", "[::1]:8080".
  [[nodiscard]] std::string ToString() const;
};

// One entry; the error says what is wrong with it and how to write it.
Result<AllowRule> ParseAllowRule(std::string_view entry);

class AllowList {
 public:
  AllowList() = default;  // allows nothing
  // Every entry is checked; the error lists each bad one as "allow[i]: reason". Duplicates
  // (after folding) are kept once.
  static Result<AllowList> Parse(const std::vector<std::string>& entries);

  // Whether `destination` may be reached. A name matches kName rules by equality and
  // kSubdomains rules by suffix; an address matches kAddress rules only (a name rule never
  // allows an address a client typed, and an address rule never allows a name).
  [[nodiscard]] bool Permits(const Authority& destination) const;
  // Whether any rule allows the name on some port (the stub DNS answers only those names).
  [[nodiscard]] bool PermitsName(std::string_view name) const;

  [[nodiscard]] const std::vector<AllowRule>& rules() const { return rules_; }

 private:
  std::vector<AllowRule> rules_;
};

}  // namespace mp::egress

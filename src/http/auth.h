// Bearer-token authentication of monkeyproof-api (docs/api.md "Transport and auth"): loading
// and vetting tokens, constant-time comparison, and a per-address limiter of failed attempts.
// Runs in monkeyproof-api. TokenSet is immutable after Load (thread-safe to read);
// FailureLimiter is not thread-safe (one per io_context thread, or guarded by the caller).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"

namespace mp::http {

inline constexpr size_t kMinTokenChars = 32;
// The default of `token_file` (ApiConfig). When Load finds it missing it is skipped if another
// source gave a token; any other missing token file is an error.
inline constexpr std::string_view kDefaultTokenFile = "/etc/monkeyproof/api-token";

// Where tokens come from, in the order they are tried (all that are set are loaded).
struct TokenSources {
  std::string file;            // one token per line; '#' comments and blank lines skipped
  std::string env_value;       // the value of MONKEYPROOF_TOKEN or AGENT_WS_TOKEN, if set
  std::string credential_dir;  // $CREDENTIALS_DIRECTORY; reads <dir>/monkeyproof-token
  // The path that counts as "the default token file" (may be missing when another source
  // gives a token). Always kDefaultTokenFile but in tests, which point it at a directory of
  // their own instead of depending on what this machine has in /etc.
  std::string default_file = std::string(kDefaultTokenFile);
};

class TokenSet {
 public:
  // Loads every source given; fails (naming the source) when the result is empty, a token is
  // shorter than kMinTokenChars, contains whitespace or control characters, or is a known
  // placeholder ("change-me", "changeme", "your-token-here", "secret", "dev-token", ... and the
  // original server's default). A token file must not be world-readable (mode & 0004).
  static Result<TokenSet> Load(const TokenSources& sources);
  // For tests and dev mode: vets the tokens the same way.
  static Result<TokenSet> FromTokens(std::vector<std::string> tokens);

  // Constant time in the candidate's content for each configured token (every token is
  // compared, no early exit).
  [[nodiscard]] bool Accepts(std::string_view candidate) const;
  [[nodiscard]] size_t size() const { return tokens_.size(); }

 private:
  std::vector<std::string> tokens_;
};

// Vets one token; the error says why, never echoing the token.
Result<void> CheckToken(std::string_view token);

// The token of a request: "Authorization: Bearer <t>" (scheme case-insensitive), else, when
// `allow_query` (WebSocket upgrades), the `token` query parameter. nullopt when none.
std::optional<std::string> ExtractToken(std::string_view authorization_header,
                                        const std::string* query_token, bool allow_query);

// What the auth check of one request comes to: let it in, 401, or 429 (docs/api.md
// "Transport and auth").
enum class AuthVerdict { kAllow, kUnauthorized, kRateLimited };

// Counts failed auth attempts per client address in fixed one-minute windows, an IPv6 client
// by its /64 as the connection limits count it (AddressKey, http/client_address.h). Bounded:
// at most `max_addresses` are tracked; the least recently failing is evicted.
class FailureLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  FailureLimiter(uint32_t failures_per_window, std::chrono::seconds window,
                 size_t max_addresses = 4096);
  // The auth decision for a request from `address` whose credential has already been checked
  // (`credential_valid`; the caller checks it for every request, blocked or not, so that the
  // time it takes does not depend on the limiter). A valid credential is let in whatever the
  // limiter says: behind a reverse proxy every client has the proxy's address, and refusing
  // valid credentials there would let anyone lock everybody out. Without a valid credential:
  // kRateLimited while the address is blocked (not counted again; *retry_after is set), else
  // the failure is counted and the answer is kUnauthorized. A blocked client learns nothing
  // about a wrong credential (429 either way); what a right one gets is what it would get
  // anywhere, so the limiter slows nobody's guessing: the tokens' length (kMinTokenChars) does.
  AuthVerdict Judge(bool credential_valid, const std::string& address, Clock::time_point now,
                    uint32_t* retry_after);
  // True when `address` is blocked now; *retry_after (seconds, >= 1) is when it lifts.
  bool Blocked(const std::string& address, Clock::time_point now, uint32_t* retry_after) const;
  void RecordFailure(const std::string& address, Clock::time_point now);
  [[nodiscard]] size_t tracked() const { return entries_.size(); }

 private:
  struct Entry {
    Clock::time_point window_start;
    uint32_t failures = 0;
    std::list<std::string>::iterator lru;
  };
  uint32_t limit_;
  std::chrono::seconds window_;
  size_t max_addresses_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // front = most recent failure
};

}  // namespace mp::http

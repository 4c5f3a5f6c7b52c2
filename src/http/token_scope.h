// Scoped API tokens, the pure part (docs/api.md "Scoped tokens"): the token format
// `mpt_<id>_<secret>`, the scope a token carries (which sessions, which rights, which presets
// it may create), the scope expression `session:ID` / `owner:NAME` / `label:LABEL`, and the
// POST /tokens body. Runs in monkeyproof-api (the CLI builds the same texts). Pure functions,
// thread-safe; no syscalls. Every parser here sees network input and is fuzzed
// (tests/fuzz/token_fuzz.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "http/api_json.h"

namespace mp::http {

// ---- Token format: "mpt_" + 16 lowercase hex (the id, not secret) + "_" + 43 ASCII letters or
// digits (the secret, log2(62^43) > 256 bits). The server finds the record by the id and
// compares the hash of the whole token in constant time.
inline constexpr std::string_view kScopedTokenPrefix = "mpt_";
inline constexpr size_t kTokenIdChars = 16;
inline constexpr size_t kTokenSecretChars = 43;
inline constexpr size_t kScopedTokenChars =
    kScopedTokenPrefix.size() + kTokenIdChars + 1 + kTokenSecretChars;

// The id of a well-formed scoped token (a view into `token`); nullopt for anything else,
// including admin tokens.
std::optional<std::string_view> ScopedTokenId(std::string_view token);
// A token id as GET /tokens and DELETE /tokens/{id} show it: 16 lowercase hex.
bool IsTokenId(std::string_view id);

// ---- Rights. A bit set; the names are the wire and CLI spelling.
enum class Right : uint8_t {
  kRead = 1,    // GET a session, its output, transcript, WebSocket (receive)
  kInput = 2,   // stdin, close-stdin, resize, signal (HTTP and WebSocket)
  kKill = 4,    // DELETE /sessions/{id}
  kCreate = 8,  // POST /sessions, only with one of the token's presets
};
using Rights = uint8_t;
std::string_view ToString(Right right);
// "read", "input", ... in the order above.
std::vector<std::string> RightNames(Rights rights);
std::optional<Right> ParseRight(std::string_view name);
inline constexpr Rights kAllRights = 15;  // what an unrestricted principal (admin, mTLS) has

// ---- Signals (POST /sessions/{id}/signal and the WebSocket's signal message, which also need
// the input right as every input does). A signal that leaves the session as it was needs input
// alone: SIGWINCH (a window change, as resize makes) and SIGCONT (a resume). Every other signal
// can end, stop or disturb the session's process (KILL, TERM, INT, HUP, QUIT, USR1, STOP, ...)
// and needs the kill right as well: an input-only token can type, not end a session.
Right SignalRight(int32_t signal);
// nullopt when `rights` may send `signal`; else the 403 message naming the missing right and
// the signal, e.g. "this token lacks the kill right, which signal 15 (TERM) needs; ...".
std::optional<std::string> MissingSignalRight(Rights rights, int32_t signal);

// ---- Which sessions a token covers.
struct SessionScope {
  enum class Kind { kSession, kOwner, kLabel };
  Kind kind = Kind::kSession;
  std::string value;  // a session id, an owner, or a label (trimmed, lower-cased)
  [[nodiscard]] std::string ToString() const;  // the expression: "owner:alice"
  friend bool operator==(const SessionScope&, const SessionScope&) = default;
};
// "session:s-1", "owner:alice", "label:team=red". The value's rules are those of a spawn's
// field: a valid session id; an owner of 1..256 bytes without control characters; a label of
// 1..64 bytes without control characters, compared trimmed and lower-cased as spawn stores
// it. The error names the expression's problem (never more than its first 64 bytes).
std::variant<SessionScope, std::string> ParseSessionScope(std::string_view text);

inline constexpr size_t kMaxTokenPresets = 32;

struct TokenScope {
  SessionScope sessions;
  Rights rights = 0;
  std::vector<std::string> presets;  // sorted, unique; non-empty exactly when kCreate is given
  // The directories a create may run sessions in (at or below one; the first is the cwd of a
  // create without one), in the order given, unique, each common::IsWorkspacePath; at most
  // common::kMaxTokenWorkspaces. Required with kCreate and only with it. The supervisor enforces
  // it (wire::SpawnRequest::cwd_within). Empty with kCreate: a token minted before tokens
  // carried workspaces, whose creates are refused (CheckCreateScope).
  std::vector<std::string> workspaces;
  [[nodiscard]] bool Has(Right right) const { return (rights & static_cast<Rights>(right)) != 0; }
  // Whether a session with these attributes is one this token covers: by `sessions`, and for
  // a token with workspaces, only a session whose cwd is at or below one of them (what it
  // could have created itself).
  [[nodiscard]] bool Covers(std::string_view id, std::string_view owner,
                            const std::vector<std::string>& labels, std::string_view cwd) const;
  [[nodiscard]] bool AllowsPreset(std::string_view preset) const;
  friend bool operator==(const TokenScope&, const TokenScope&) = default;
};

// ---- POST /tokens: {"sessions":"owner:alice","rights":["read","input","create"],
// "presets":["claude"],"workspaces":["/srv/monkeyproof/workspaces/alice"],"ttlSeconds":3600}.
// ttlSeconds is required, 1..max_ttl_seconds. Unknown members, wrong types, an unknown right, a
// duplicate right, create without presets or workspaces, presets or workspaces without create,
// a workspace that is not a normalized absolute path, a duplicate workspace or more than
// common::kMaxTokenWorkspaces are 400 naming the member.
struct MintBody {
  TokenScope scope;
  uint64_t ttl_seconds = 0;
};
ApiResult<MintBody> ParseMintBody(std::string_view body, uint64_t max_ttl_seconds);
// A scope alone, {"sessions":…,"rights":[…],"presets":[…],"workspaces":[…]} (the mint body
// without ttlSeconds),
// with the same rules: an entry of the client-principals file (http/client_principals.h).
ApiResult<TokenScope> ParseScopeObject(std::string_view text);

// The default and the largest `token_max_ttl_seconds` of api.conf.
inline constexpr uint64_t kDefaultTokenMaxTtlSeconds = 7ull * 24 * 3600;
inline constexpr uint64_t kLargestTokenMaxTtlSeconds = 366ull * 24 * 3600;

// "1h", "30m", "2d", "45s", "3600" (seconds) -> seconds; nullopt when malformed or zero. For
// the CLI's --ttl; the API takes seconds.
std::optional<uint64_t> ParseDuration(std::string_view text);

}  // namespace mp::http

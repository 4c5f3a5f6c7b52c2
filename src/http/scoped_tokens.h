// The store of scoped tokens (docs/api.md "Scoped tokens"): minting (a random secret shown
// once), verification (look up by the token's id, compare SHA-256 hashes in constant time,
// check expiry and revocation), revocation, listing, and persistence of the records (hashes,
// scopes, expiry, revocation; never a secret) in one file under the API's state directory,
// replaced atomically on every change and loaded strictly at start. A change is prepared
// (checked, and the file's new text built from per-record texts kept in memory), written, and
// only then committed: Mint and Revoke do all three here; the API's TokenWriter writes on its
// own thread (token_writer.h). Runs in monkeyproof-api on the io_context thread; not
// thread-safe; the WriteFn may run on another thread (it touches nothing of the store).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "http/token_scope.h"

namespace mp::http {

inline constexpr size_t kDefaultMaxScopedTokens = 1000;
inline constexpr size_t kLargestMaxScopedTokens = 100'000;

struct TokenRecord {
  std::string id;                    // 16 lowercase hex; public
  std::array<uint8_t, 32> sha256{};  // SHA-256 of the whole token text
  TokenScope scope;
  uint64_t created_at_ms = 0;  // Unix epoch, milliseconds
  uint64_t expires_at_ms = 0;
  std::string created_by;  // the minting principal, e.g. "admin"
  std::optional<uint64_t> revoked_at_ms;
  friend bool operator==(const TokenRecord&, const TokenRecord&) = default;
};

struct MintedToken {
  std::string token;  // the secret, shown to the client once and never stored
  TokenRecord record;
};

// Outcome of checking a presented token.
enum class TokenVerdict {
  kNotScoped,  // not in the scoped format (it may be an admin token)
  kUnknown,    // scoped format, but no record has this id, or the hash differs
  kExpired,
  kRevoked,
  kValid,
};

class TokenStore {
 public:
  // Replaces the file at `path` with `text` durably and atomically (WriteFileAtomically); an
  // error leaves the old file. Tests inject slow or failing ones.
  using WriteFn = std::function<Result<void>(const std::string& path, const std::string& text)>;

  // A change prepared but not yet in memory: what the file must hold before it is committed.
  struct Change {
    TokenRecord record;  // the new record, or the revoked one as it will be
    std::string token;   // a mint: the secret token, shown once
    std::string text;    // the whole file with the change
  };

  struct Options {
    // The file of records. Empty: scoped tokens are disabled (Mint fails, every scoped token
    // is kUnknown), so that revocation can never be forgotten by a restart.
    std::string path;
    uint64_t max_ttl_seconds = kDefaultTokenMaxTtlSeconds;
    size_t max_live = kDefaultMaxScopedTokens;  // unexpired, unrevoked tokens at once
  };

  // A disabled store (no path), until Open gives a real one.
  TokenStore() = default;

  // Loads `options.path` when it exists (a missing file is an empty store; its directory must
  // exist). Any problem with the file (not JSON, unknown member, bad hash, duplicate id, wrong
  // type, over 64 MiB, writable by its group or others, readable by others) is an error naming
  // the file and what to do: the API refuses to start rather than forget a revocation.
  static Result<TokenStore> Open(Options options);

  [[nodiscard]] bool enabled() const { return !options_.path.empty(); }
  [[nodiscard]] const Options& options() const { return options_; }

  // Mints a token for `scope`, valid `ttl_seconds` (1..max_ttl_seconds) from `now_ms`, and
  // writes the store. Errors: disabled (errnum ENOTSUP), max_live reached (EMFILE), the file
  // could not be written (its errno; the token is then not minted).
  Result<MintedToken> Mint(const TokenScope& scope, uint64_t ttl_seconds, std::string created_by,
                           uint64_t now_ms);
  // Mint's first step: the checks and the new record, not yet in memory (its errors are
  // Mint's, except the write's). Prepare one change at a time: commit or drop it before the
  // next, or the next's text lacks it.
  Result<Change> PrepareMint(const TokenScope& scope, uint64_t ttl_seconds, std::string created_by,
                             uint64_t now_ms);
  // Revoke's first step: nullopt when there is nothing to write (*known: whether a record has
  // this id; it is then revoked already).
  std::optional<Change> PrepareRevoke(std::string_view id, uint64_t now_ms, bool* known) const;
  // Takes a prepared change into memory once its text is durable.
  void Commit(Change change);
  // How changes are written (the default: WriteFileAtomically).
  [[nodiscard]] const WriteFn& write_function() const { return write_; }
  void set_write_function(WriteFn write) { write_ = std::move(write); }

  // Checks `token` (time depends on its length, on whether its id is known, and not on how
  // much of the secret matches). On kValid, kExpired and kRevoked, *record points at the
  // record (valid until the next Mint or Revoke).
  TokenVerdict Verify(std::string_view token, uint64_t now_ms,
                      const TokenRecord** record = nullptr) const;

  // The state now of the token with id `id`, for a connection that authenticated with it
  // earlier: kValid, kRevoked, kExpired, or kUnknown (no record: never minted, or forgotten
  // after its expiry). On kValid, kExpired and kRevoked, *record points at the record.
  TokenVerdict Lookup(std::string_view id, uint64_t now_ms,
                      const TokenRecord** record = nullptr) const;

  // Marks the token revoked and writes the store. false: no record with this id (or it is
  // already past its expiry and forgotten). Revoking twice keeps the first time. When the
  // file cannot be written, nothing changes (the token stays valid, as the file says) and the
  // error says why.
  Result<bool> Revoke(std::string_view id, uint64_t now_ms);

  // Every record not yet expired, in creation order (then id).
  [[nodiscard]] std::vector<TokenRecord> List(uint64_t now_ms) const;
  [[nodiscard]] size_t size() const { return records_.size(); }

  // The file's text for these records (also what Open reads); exposed for tests and the fuzzer.
  // One record per line, so that a change rebuilds the text from the records' kept lines.
  static std::string Serialize(const std::map<std::string, TokenRecord>& records);
  // A temporary file beside `path` (mode 0600), fsync, rename over `path`, fsync of the
  // directory: a crash leaves the old file or the new one.
  static Result<void> WriteFileAtomically(const std::string& path, const std::string& text);
  static Result<std::map<std::string, TokenRecord>> Parse(std::string_view text);

 private:
  explicit TokenStore(Options options) : options_(std::move(options)) {}
  // (Options' default path is empty: the default store is disabled.)
  // Drops records past their expiry: an expired token is refused whether or not it is known.
  void Prune(uint64_t now_ms);
  void Put(TokenRecord record);
  std::map<std::string, TokenRecord>::iterator Erase(std::map<std::string, TokenRecord>::iterator);
  // The file's text with `record` added or replacing the one with its id (none: as it is).
  [[nodiscard]] std::string TextWith(const TokenRecord* record) const;

  Options options_;
  WriteFn write_ = &TokenStore::WriteFileAtomically;
  std::map<std::string, TokenRecord> records_;  // by id
  std::map<std::string, std::string> lines_;    // by id: each record's line of the file
};

// SHA-256 of `text` (OpenSSL's libcrypto).
std::array<uint8_t, 32> Sha256(std::string_view text);

}  // namespace mp::http

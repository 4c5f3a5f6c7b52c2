// The store's file (token_store in api.conf, by default tokens.json in the unit's
// StateDirectory), one JSON object with one record per line, rewritten whole on every change:
//
//   {"format":"monkeyproof-tokens/1","tokens":[
//   {"createdAt":<ms>,"createdBy":"admin","expiresAt":<ms>,"id":"0123456789abcdef",
//    "presets":[],"revokedAt":<ms> (only once revoked),"rights":["read","input"],
//    "sessions":"owner:alice","sha256":"<64 hex>",
//    "workspaces":["/srv/ws/alice"] (only with the create right; absent in records minted
//    before tokens carried workspaces)},
//   ...
//   ]}
//
// (Any JSON of that shape loads: files of earlier versions are pretty-printed.) Each record's
// line is kept in memory, so that a change costs building the text from the lines (a copy),
// not serialising every record again. Writes go to "<path>.tmp" (O_EXCL after removing a stale
// one, mode 0600), fsync, rename over the path, then fsync of the directory, so that a crash
// leaves the old file or the new one.
#include "http/scoped_tokens.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "common/json_strict.h"
#include "common/random_id.h"
#include "common/unique_fd.h"

namespace mp::http {
namespace {

using nlohmann::json;

constexpr std::string_view kFormat = "monkeyproof-tokens/1";
// The file holds at most 2 * kLargestMaxScopedTokens records of a few hundred bytes.
constexpr size_t kMaxFileBytes = 64 * 1024 * 1024;
// An expired or revoked record is kept this long past its expiry, so that its holder is told
// "expired" rather than "unknown"; after that it is forgotten (the token stays refused).
constexpr uint64_t kForgetAfterMs = 24ull * 3600 * 1000;
constexpr size_t kMaxCreatedByBytes = 512;

std::string Hex(const std::array<uint8_t, 32>& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

bool FromHex(std::string_view text, std::array<uint8_t, 32>* out) {
  if (text.size() != 64) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    const int hi = nibble(text[2 * i]);
    const int lo = nibble(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return true;
}

bool Live(const TokenRecord& r, uint64_t now_ms) {
  return !r.revoked_at_ms && now_ms < r.expires_at_ms;
}

Result<void> WriteAll(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      return ErrnoError(err, "write(" + what + ")");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

std::array<uint8_t, 32> Sha256(std::string_view text) {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  // EVP_Digest with SHA-256 cannot fail short of memory exhaustion inside OpenSSL; a failure
  // leaves `out` zero, which no token's hash equals with any real probability.
  (void)EVP_Digest(text.data(), text.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

namespace {

std::string RecordLine(const TokenRecord& r) {
  json j = {{"id", r.id},
            {"sha256", Hex(r.sha256)},
            {"sessions", r.scope.sessions.ToString()},
            {"rights", RightNames(r.scope.rights)},
            {"presets", r.scope.presets},
            {"createdAt", r.created_at_ms},
            {"expiresAt", r.expires_at_ms},
            {"createdBy", r.created_by}};
  if (r.revoked_at_ms) j["revokedAt"] = *r.revoked_at_ms;
  if (!r.scope.workspaces.empty()) j["workspaces"] = r.scope.workspaces;
  return j.dump();
}

// The file around its record lines, which come in id order.
class FileText {
 public:
  explicit FileText(size_t bytes) {
    text_.reserve(bytes + 64);
    text_ = R"({"format":")" + std::string(kFormat) + R"(","tokens":[)" + "\n";
  }
  void Add(const std::string& line) {
    if (!first_) text_ += ",\n";
    first_ = false;
    text_ += line;
  }
  std::string Finish() && {
    text_ += (first_ ? "]}\n" : "\n]}\n");
    return std::move(text_);
  }

 private:
  std::string text_;
  bool first_ = true;
};

}  // namespace

std::string TokenStore::Serialize(const std::map<std::string, TokenRecord>& records) {
  FileText text(records.size() * 320);
  for (const auto& [id, r] : records) text.Add(RecordLine(r));
  return std::move(text).Finish();
}

std::string TokenStore::TextWith(const TokenRecord* record) const {
  size_t bytes = 0;
  for (const auto& [id, line] : lines_) bytes += line.size() + 2;
  const std::string added = record != nullptr ? RecordLine(*record) : std::string();
  FileText text(bytes + added.size());
  bool placed = record == nullptr;
  for (const auto& [id, line] : lines_) {
    if (!placed && record->id <= id) {
      text.Add(added);
      placed = true;
      if (record->id == id) continue;  // the record's new line replaces its old one
    }
    text.Add(line);
  }
  if (!placed) text.Add(added);
  return std::move(text).Finish();
}

void TokenStore::Put(TokenRecord record) {
  std::string id = record.id;
  lines_[id] = RecordLine(record);
  records_[std::move(id)] = std::move(record);
}

std::map<std::string, TokenRecord>::iterator TokenStore::Erase(
    std::map<std::string, TokenRecord>::iterator it) {
  lines_.erase(it->first);
  return records_.erase(it);
}

Result<std::map<std::string, TokenRecord>> TokenStore::Parse(std::string_view text) {
  json doc;
  MP_RETURN_IF_ERROR(wire::ParseJson(text, &doc, {4, false}));
  wire::FieldErrors errors;
  wire::ObjectReader root(doc, "", &errors);
  const wire::StringRule format_rule{1, 64, nullptr, {}};
  const std::string format = root.String("format", format_rule);
  std::map<std::string, TokenRecord> out;
  if (root.is_object() && errors.empty() && format != kFormat) {
    errors.Add("/format", "is not \"" + std::string(kFormat) + "\"");
  }
  if (root.Require("tokens")) {
    const json& list = doc["tokens"];
    if (!list.is_array()) {
      errors.Add("/tokens", "expected array");
    } else if (list.size() > 2 * kLargestMaxScopedTokens) {
      errors.Add("/tokens",
                 "more than " + std::to_string(2 * kLargestMaxScopedTokens) + " records");
    } else {
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string ptr = "/tokens/" + std::to_string(i);
        wire::ObjectReader item(list[i], ptr, &errors);
        TokenRecord r;
        r.id = item.String("id", {kTokenIdChars, kTokenIdChars, &IsTokenId, "16 lowercase hex"});
        const std::string hash = item.String("sha256", {64, 64, nullptr, {}});
        if (item.is_object() && hash.size() == 64 && !FromHex(hash, &r.sha256)) {
          errors.Add(ptr + "/sha256", "expected 64 lowercase hex digits");
        }
        const std::string sessions = item.String("sessions", {1, 512, nullptr, {}});
        if (!sessions.empty()) {
          auto scope = ParseSessionScope(sessions);
          if (auto* e = std::get_if<std::string>(&scope)) {
            errors.Add(ptr + "/sessions", *e);
          } else {
            r.scope.sessions = std::get<SessionScope>(scope);
          }
        }
        const auto rights = item.StringArray("rights", 4, {1, 16, nullptr, {}});
        for (const auto& name : rights) {
          const auto right = ParseRight(name);
          if (!right) {
            errors.Add(ptr + "/rights", "unknown right \"" + name + "\"");
          } else {
            r.scope.rights |= static_cast<Rights>(*right);
          }
        }
        if (item.is_object() && rights.empty()) errors.Add(ptr + "/rights", "no right given");
        r.scope.presets = item.StringArray("presets", kMaxTokenPresets,
                                           {1, 256, &common::IsPresetName, "a preset name"});
        std::sort(r.scope.presets.begin(), r.scope.presets.end());
        // Absent in records minted before tokens carried workspaces: such a create token's
        // creates are refused (http/routes.cc CheckCreateScope).
        r.scope.workspaces = item.StringArray("workspaces", common::kMaxTokenWorkspaces,
                                              {2, common::kMaxWorkspacePathBytes,
                                               &common::IsWorkspacePath, common::kWorkspacePathIs});
        r.created_at_ms = item.Uint("createdAt", {0, UINT64_MAX});
        r.expires_at_ms = item.Uint("expiresAt", {0, UINT64_MAX});
        r.created_by = item.String("createdBy", {1, kMaxCreatedByBytes, nullptr, {}});
        r.revoked_at_ms = item.OptUint("revokedAt", {0, UINT64_MAX});
        item.RejectUnknown();
        if (item.is_object() && !r.id.empty() && !out.emplace(r.id, r).second) {
          errors.Add(ptr + "/id", "duplicate id " + r.id);
        }
      }
    }
  }
  root.RejectUnknown();
  if (!errors.empty()) return errors.ToError();
  return out;
}

Result<TokenStore> TokenStore::Open(Options options) {
  TokenStore store(std::move(options));
  if (!store.enabled()) return store;
  const std::string& path = store.options_.path;
  const std::string what = "token store \"" + path + "\"";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) {
    const int err = errno;
    if (err != ENOENT) return ErrnoError(err, "open(" + what + ")");
    // A missing file is a fresh store, but its directory must be there to write it later.
    struct stat dir {};
    const std::string dir_path = DirOf(path);
    if (::stat(dir_path.c_str(), &dir) != 0 || !S_ISDIR(dir.st_mode)) {
      return PlainError(what + ": its directory \"" + dir_path +
                        "\" does not exist; create it (writable by the API's user) or set "
                        "token_store in api.conf");
    }
    return store;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    const int err = errno;
    return ErrnoError(err, "fstat(" + what + ")");
  }
  if (!S_ISREG(st.st_mode)) return PlainError(what + " is not a regular file");
  // Whoever can write the file can mint tokens (a record is a hash and a scope) or undo a
  // revocation; whoever can read it learns every scope. The group may read it, as for the
  // admin token file; the API writes it 0600.
  if ((st.st_mode & (S_IWGRP | S_IWOTH | S_IROTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return PlainError(what + " is writable by its group or others, or readable by others (mode " +
                      mode + "); run chmod 0600 " + path + " and check that nobody changed it");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxFileBytes) {
    return PlainError(what + " is larger than " + std::to_string(kMaxFileBytes) + " bytes");
  }
  std::string text;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      return ErrnoError(err, "read(" + what + ")");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxFileBytes) {
      return PlainError(what + " is larger than " + std::to_string(kMaxFileBytes) + " bytes");
    }
  }
  auto records = Parse(text);
  if (!records) {
    return PlainError(what + " is damaged (" + records.error().what +
                      "); restore it from a backup, or move it away to revoke every scoped "
                      "token and start with none");
  }
  for (auto& [id, record] : *records) store.Put(std::move(record));
  return store;
}

void TokenStore::Prune(uint64_t now_ms) {
  for (auto it = records_.begin(); it != records_.end();) {
    if (now_ms >= it->second.expires_at_ms && now_ms - it->second.expires_at_ms >= kForgetAfterMs) {
      it = Erase(it);
    } else {
      ++it;
    }
  }
}

Result<void> TokenStore::WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  // A .tmp left by a crash is ours to replace; O_EXCL then refuses anything planted meanwhile.
  (void)::unlink(tmp.c_str());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) {
    const int err = errno;
    return ErrnoError(err, "open(token store \"" + tmp + "\")");
  }
  MP_RETURN_IF_ERROR(WriteAll(fd.get(), text, "token store \"" + tmp + "\""));
  if (::fsync(fd.get()) != 0) {
    const int err = errno;
    (void)::unlink(tmp.c_str());
    return ErrnoError(err, "fsync(token store \"" + tmp + "\")");
  }
  (void)fd.Close();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    (void)::unlink(tmp.c_str());
    return ErrnoError(err, "rename(\"" + tmp + "\", \"" + path + "\")");
  }
  // The rename is durable only once the directory is.
  UniqueFd dir(::open(DirOf(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) (void)::fsync(dir.get());
  return Ok();
}

Result<MintedToken> TokenStore::Mint(const TokenScope& scope, uint64_t ttl_seconds,
                                     std::string created_by, uint64_t now_ms) {
  MP_TRY(Change change, PrepareMint(scope, ttl_seconds, std::move(created_by), now_ms));
  // A token the file does not hold would not survive a restart: not minted.
  if (auto written = write_(options_.path, change.text); !written) {
    return std::move(written).error().Wrap("mint scoped token");
  }
  MintedToken minted{std::move(change.token), change.record};
  Commit(std::move(change));
  return minted;
}

Result<TokenStore::Change> TokenStore::PrepareMint(const TokenScope& scope, uint64_t ttl_seconds,
                                                   std::string created_by, uint64_t now_ms) {
  if (!enabled()) {
    return ErrnoError(ENOTSUP,
                      "scoped tokens are disabled: set token_store in api.conf (the package "
                      "sets it to its StateDirectory)");
  }
  if (ttl_seconds < 1 || ttl_seconds > options_.max_ttl_seconds) {
    return PlainError("ttl must be 1.." + std::to_string(options_.max_ttl_seconds) + " seconds");
  }
  Prune(now_ms);
  const size_t live = static_cast<size_t>(std::count_if(
      records_.begin(), records_.end(), [&](const auto& kv) { return Live(kv.second, now_ms); }));
  if (live >= options_.max_live) {
    return ErrnoError(EMFILE, std::to_string(live) +
                                  " scoped tokens are live (max_scoped_tokens); revoke some "
                                  "or wait for them to expire");
  }
  // Revoked and expired records are remembered for a better 401 message only; when they crowd
  // the file, the oldest goes (its token stays refused: its id is then unknown).
  while (records_.size() >= 2 * options_.max_live) {
    auto oldest = records_.end();
    for (auto it = records_.begin(); it != records_.end(); ++it) {
      if (Live(it->second, now_ms)) continue;
      if (oldest == records_.end() || it->second.created_at_ms < oldest->second.created_at_ms) {
        oldest = it;
      }
    }
    if (oldest == records_.end()) break;
    Erase(oldest);
  }
  MP_TRY(std::string id, common::RandomId(common::kHexAlphabet, kTokenIdChars));
  if (records_.count(id) != 0) return PlainError("token id collision; try again");
  MP_TRY(std::string secret, common::RandomId(common::kAlnumAlphabet, kTokenSecretChars));
  Change minted;
  minted.token = std::string(kScopedTokenPrefix) + id + "_" + secret;
  ::explicit_bzero(secret.data(), secret.size());
  minted.record.id = id;
  minted.record.sha256 = Sha256(minted.token);
  minted.record.scope = scope;
  minted.record.created_at_ms = now_ms;
  minted.record.expires_at_ms = now_ms + ttl_seconds * 1000;
  minted.record.created_by = std::move(created_by);
  minted.text = TextWith(&minted.record);
  return minted;
}

std::optional<TokenStore::Change> TokenStore::PrepareRevoke(std::string_view id, uint64_t now_ms,
                                                            bool* known) const {
  const auto it = records_.find(std::string(id));
  *known = it != records_.end();
  if (!*known || it->second.revoked_at_ms) return std::nullopt;
  Change revoked;
  revoked.record = it->second;
  revoked.record.revoked_at_ms = now_ms;
  revoked.text = TextWith(&revoked.record);
  return revoked;
}

void TokenStore::Commit(Change change) {
  ::explicit_bzero(change.token.data(), change.token.size());
  Put(std::move(change.record));
}

TokenVerdict TokenStore::Verify(std::string_view token, uint64_t now_ms,
                                const TokenRecord** record) const {
  const auto id = ScopedTokenId(token);
  if (!id) return TokenVerdict::kNotScoped;
  const auto it = records_.find(std::string(*id));
  if (it == records_.end()) return TokenVerdict::kUnknown;
  const std::array<uint8_t, 32> hash = Sha256(token);
  // Constant time over the 32 bytes: how much of a guessed secret matches is not observable.
  if (CRYPTO_memcmp(hash.data(), it->second.sha256.data(), hash.size()) != 0) {
    return TokenVerdict::kUnknown;
  }
  if (record != nullptr) *record = &it->second;
  if (it->second.revoked_at_ms) return TokenVerdict::kRevoked;
  if (now_ms >= it->second.expires_at_ms) return TokenVerdict::kExpired;
  return TokenVerdict::kValid;
}

TokenVerdict TokenStore::Lookup(std::string_view id, uint64_t now_ms,
                                const TokenRecord** record) const {
  const auto it = records_.find(std::string(id));
  if (it == records_.end()) return TokenVerdict::kUnknown;
  if (record != nullptr) *record = &it->second;
  if (it->second.revoked_at_ms) return TokenVerdict::kRevoked;
  if (now_ms >= it->second.expires_at_ms) return TokenVerdict::kExpired;
  return TokenVerdict::kValid;
}

Result<bool> TokenStore::Revoke(std::string_view id, uint64_t now_ms) {
  bool known = false;
  auto change = PrepareRevoke(id, now_ms, &known);
  if (!change) return known;
  // Memory follows the file: a revocation only this process knew would end at the next
  // restart, and a retry would find it "already revoked" and never write it.
  if (auto written = write_(options_.path, change->text); !written) {
    return std::move(written).error().Wrap("revoke token " + std::string(id));
  }
  Commit(std::move(*change));
  return true;
}

std::vector<TokenRecord> TokenStore::List(uint64_t now_ms) const {
  std::vector<TokenRecord> out;
  for (const auto& [id, r] : records_) {
    if (now_ms < r.expires_at_ms) out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const TokenRecord& a, const TokenRecord& b) {
    return a.created_at_ms != b.created_at_ms ? a.created_at_ms < b.created_at_ms : a.id < b.id;
  });
  return out;
}

}  // namespace mp::http

#include "http/auth.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "common/unique_fd.h"
#include "http/client_address.h"

namespace mp::http {
namespace {

// Tokens equal to one of these (ASCII case-insensitive) are refused whatever their length:
// they are what README files, .env templates and the original server ship as defaults.
constexpr std::string_view kPlaceholders[] = {
    "change-me",
    "changeme",
    "change-this",
    "your-token-here",
    "your-secret-token",
    "secret",
    "token",
    "dev-token",
    "test-token",
    "password",
    "default",
    "monkeyproof",
    "dev-secret-change-me",  // the original's AGENT_WS_TOKEN default
};

// Tokens containing one of these are refused too: a padded "change-me-0123456789..." is still a
// placeholder. None of them can occur in a hex token, and in a random base64 token of any
// practical length the odds are below 2^-40.
constexpr std::string_view kPlaceholderPhrases[] = {
    "changeme",        "change-me",         "change_me",  "change-this",
    "your-token-here", "your-secret-token", "replace-me",
};

// Token files are a few lines; anything bigger is not a token file.
constexpr size_t kMaxTokenFileBytes = 64 * 1024;

constexpr std::string_view kCredentialName = "monkeyproof-token";

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  }
  return true;
}

bool ContainsIgnoreCase(std::string_view haystack, std::string_view needle) {
  if (needle.size() > haystack.size()) return false;
  for (size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    if (EqualsIgnoreCase(haystack.substr(i, needle.size()), needle)) return true;
  }
  return false;
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string_view TrimView(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Reads a small file whole. `what` names it in errors ("token file \"/etc/...\""). A missing
// file is an Error with errnum ENOENT, so the caller can tell "missing" from "unreadable".
// `check_mode`: refuse a file others can read.
Result<std::string> ReadSecretFile(const std::string& path, const std::string& what,
                                   bool check_mode) {
  // O_NONBLOCK: a FIFO planted at the path must not hang the start; it is refused below.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  // errno is saved before the message is built: allocating it may change errno.
  if (!fd) {
    const int err = errno;
    return ErrnoError(err, "open(" + what + ")");
  }
  struct stat st {};
  // fstat, not stat: the checks apply to the file actually opened.
  if (::fstat(fd.get(), &st) != 0) {
    const int err = errno;
    return ErrnoError(err, "fstat(" + what + ")");
  }
  if (!S_ISREG(st.st_mode)) return PlainError(what + " is not a regular file");
  if (check_mode && (st.st_mode & S_IROTH) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return PlainError(what + " is readable by others (mode " + mode + "); run chmod o-r " + path);
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxTokenFileBytes) {
    return PlainError(what + " is larger than " + std::to_string(kMaxTokenFileBytes) + " bytes");
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::explicit_bzero(buf, sizeof(buf));
      ::explicit_bzero(text.data(), text.size());
      return ErrnoError(err, "read(" + what + ")");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxTokenFileBytes) {
      ::explicit_bzero(buf, sizeof(buf));
      ::explicit_bzero(text.data(), text.size());
      return PlainError(what + " is larger than " + std::to_string(kMaxTokenFileBytes) + " bytes");
    }
  }
  ::explicit_bzero(buf, sizeof(buf));
  return text;
}

// Splits a token file into its tokens, vetting each; errors name the line, never the token.
Result<void> ParseTokenLines(const std::string& text, const std::string& what,
                             std::vector<std::string>* out) {
  std::string_view rest = text;
  int lineno = 0;
  while (!rest.empty()) {
    ++lineno;
    const size_t nl = rest.find('\n');
    const std::string_view line = TrimView(rest.substr(0, nl));
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    if (auto ok = CheckToken(line); !ok) {
      return std::move(ok).error().Wrap(what + " line " + std::to_string(lineno));
    }
    out->emplace_back(line);
  }
  return Ok();
}

// Wipes and clears a secret string. Best effort: buffers an earlier reallocation released are
// not reached.
void Wipe(std::string* s) {
  ::explicit_bzero(s->data(), s->size());
  s->clear();
}

// 1 when x < y, else 0, without a branch (both below 2^63, true of any string length).
size_t CtLess(size_t x, size_t y) { return (x - y) >> (sizeof(size_t) * 8 - 1); }

// Compares `candidate` with `token` in time that depends only on token.size(): every byte of
// the token is looked at, the candidate is read at a clamped index, and a length difference is
// folded into the accumulator instead of returning early. Returns 1 on a match, else 0.
uint32_t CtEquals(std::string_view token, std::string_view candidate) {
  static const unsigned char kZero = 0;
  const auto* t = reinterpret_cast<const unsigned char*>(token.data());
  // An empty candidate has no byte to read at index 0; its length is public anyway.
  const auto* c =
      candidate.empty() ? &kZero : reinterpret_cast<const unsigned char*>(candidate.data());
  const size_t n = candidate.size();
  uint64_t diff = static_cast<uint64_t>(token.size() ^ n);
  diff |= diff >> 32;
  diff |= diff >> 16;
  diff |= diff >> 8;
  uint32_t acc = static_cast<uint32_t>(diff & 0xff);
  for (size_t i = 0; i < token.size(); ++i) {
    const size_t in_range = CtLess(i, n);  // 1 while i < n
    const size_t mask = 0 - in_range;      // all ones while i < n
    const unsigned char cb =
        static_cast<unsigned char>(c[i & mask] & static_cast<unsigned char>(mask));
    acc |= static_cast<uint32_t>(t[i] ^ cb);
    // The barrier makes `acc` opaque after each step, so the compiler can neither stop at the
    // first difference nor turn the loop into memcmp.
    asm volatile("" : "+r"(acc));
  }
  // acc is 0..255: acc - 1 has its top bit set only when acc == 0.
  return (acc - 1) >> 31;
}

}  // namespace

Result<void> CheckToken(std::string_view token) {
  if (token.empty()) return PlainError("API token is empty");
  for (const std::string_view p : kPlaceholders) {
    if (EqualsIgnoreCase(token, p)) {
      return PlainError(
          "API token is a known placeholder; generate a random one (e.g. openssl rand -hex 32)");
    }
  }
  for (const std::string_view p : kPlaceholderPhrases) {
    if (ContainsIgnoreCase(token, p)) {
      return PlainError(
          "API token contains a placeholder phrase (such as \"change-me\"); generate a random "
          "one (e.g. openssl rand -hex 32)");
    }
  }
  for (size_t i = 0; i < token.size(); ++i) {
    const auto b = static_cast<unsigned char>(token[i]);
    if (b <= 0x20 || b == 0x7f) {
      return PlainError("API token contains whitespace or a control character (at byte " +
                        std::to_string(i) + ")");
    }
  }
  if (std::all_of(token.begin(), token.end(), [&](char ch) { return ch == token.front(); })) {
    return PlainError("API token is one character repeated, a placeholder");
  }
  if (token.size() < kMinTokenChars) {
    return PlainError("API token is " + std::to_string(token.size()) + " characters; at least " +
                      std::to_string(kMinTokenChars) + " are required");
  }
  return Ok();
}

Result<TokenSet> TokenSet::FromTokens(std::vector<std::string> tokens) {
  if (tokens.empty()) return PlainError("no API token given");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (auto ok = CheckToken(tokens[i]); !ok) {
      for (auto& t : tokens) Wipe(&t);
      return std::move(ok).error().Wrap("token " + std::to_string(i + 1) + " of " +
                                        std::to_string(tokens.size()));
    }
  }
  // The same token from two sources (file and credential, say) is kept once.
  std::sort(tokens.begin(), tokens.end());
  tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
  TokenSet set;
  set.tokens_ = std::move(tokens);
  return set;
}

Result<TokenSet> TokenSet::Load(const TokenSources& sources) {
  std::vector<std::string> tokens;
  // Everything read is wiped when this function returns, whichever way.
  struct Wiper {
    std::vector<std::string>* v;
    std::string text;
    ~Wiper() {
      for (auto& t : *v) Wipe(&t);
      Wipe(&text);
    }
  } wiper{&tokens, {}};

  std::string empty_note;  // why a source that was set gave nothing, for the final error
  bool default_file_missing = false;
  if (!sources.file.empty()) {
    const std::string what = "token file \"" + sources.file + "\"";
    auto text = ReadSecretFile(sources.file, what, /*check_mode=*/true);
    if (!text) {
      if (text.error().errnum == ENOENT && sources.file == sources.default_file) {
        // Decided below: fine when another source gives a token.
        default_file_missing = true;
      } else {
        return std::move(text).error();
      }
    } else {
      wiper.text = std::move(*text);
      const size_t before = tokens.size();
      MP_RETURN_IF_ERROR(ParseTokenLines(wiper.text, what, &tokens));
      Wipe(&wiper.text);
      if (tokens.size() == before) empty_note += "; " + what + " holds no token";
    }
  }

  if (!sources.env_value.empty()) {
    const std::string_view value = TrimView(sources.env_value);
    if (auto ok = CheckToken(value); !ok) {
      return std::move(ok).error().Wrap(
          "token from the environment (MONKEYPROOF_TOKEN or AGENT_WS_TOKEN)");
    }
    tokens.emplace_back(value);
  }

  if (!sources.credential_dir.empty()) {
    const std::string path = sources.credential_dir + "/" + std::string(kCredentialName);
    const std::string what = "credential \"" + path + "\"";
    // systemd sets CREDENTIALS_DIRECTORY for any credential; ours may simply not be among them.
    // No mode check: systemd owns the directory and its modes.
    auto text = ReadSecretFile(path, what, /*check_mode=*/false);
    if (!text) {
      if (text.error().errnum != ENOENT) return std::move(text).error();
    } else {
      wiper.text = std::move(*text);
      const size_t before = tokens.size();
      MP_RETURN_IF_ERROR(ParseTokenLines(wiper.text, what, &tokens));
      Wipe(&wiper.text);
      if (tokens.size() == before) empty_note += "; " + what + " holds no token";
    }
  }

  if (tokens.empty()) {
    std::string msg =
        "no API token: set token_file, MONKEYPROOF_TOKEN or a systemd credential "
        "'monkeyproof-token'";
    if (default_file_missing) msg += "; " + sources.default_file + " does not exist";
    return PlainError(msg + empty_note);
  }
  // Every token is already vetted; FromTokens vets again (cheap) and de-duplicates.
  return FromTokens(std::exchange(tokens, {}));
}

bool TokenSet::Accepts(std::string_view candidate) const {
  uint32_t matched = 0;
  // No early exit: every configured token is compared even after a match.
  for (const std::string& token : tokens_) matched |= CtEquals(token, candidate);
  return matched != 0;
}

// A present Authorization header decides alone: when it is not "Bearer <token>" the request
// has no token, even if the query carries one. Falling back would let a client (or a proxy that
// adds its own Basic credentials) end up authenticated by a different credential than the one
// it sent in the header; a wrong header is a client bug best surfaced as 401. An empty header
// value counts as absent (callers pass "" for a missing header).
std::optional<std::string> ExtractToken(std::string_view authorization_header,
                                        const std::string* query_token, bool allow_query) {
  std::string_view h = authorization_header;
  while (!h.empty() && (h.front() == ' ' || h.front() == '\t')) h.remove_prefix(1);
  while (!h.empty() && (h.back() == ' ' || h.back() == '\t')) h.remove_suffix(1);
  if (!h.empty()) {
    constexpr std::string_view kScheme = "bearer";
    if (h.size() <= kScheme.size() || !EqualsIgnoreCase(h.substr(0, kScheme.size()), kScheme) ||
        h[kScheme.size()] != ' ') {
      return std::nullopt;
    }
    h.remove_prefix(kScheme.size());
    while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
    // token68 is one word: "Bearer a b" is malformed, not the token "a b".
    if (h.empty() || h.find_first_of(" \t") != std::string_view::npos) return std::nullopt;
    return std::string(h);
  }
  if (allow_query && query_token != nullptr && !query_token->empty()) return *query_token;
  return std::nullopt;
}

FailureLimiter::FailureLimiter(uint32_t failures_per_window, std::chrono::seconds window,
                               size_t max_addresses)
    : limit_(std::max<uint32_t>(failures_per_window, 1)),
      window_(std::max(window, std::chrono::seconds(1))),
      max_addresses_(std::max<size_t>(max_addresses, 1)) {}

bool FailureLimiter::Blocked(const std::string& address, Clock::time_point now,
                             uint32_t* retry_after) const {
  const auto it = entries_.find(AddressKey(address));
  if (it == entries_.end()) return false;
  const Entry& e = it->second;
  const Clock::time_point end = e.window_start + window_;
  if (now >= end || e.failures < limit_) return false;
  if (retry_after != nullptr) {
    // Rounded up: "Retry-After: 0" would invite an immediate retry that is still refused.
    const auto left = std::chrono::ceil<std::chrono::seconds>(end - now).count();
    *retry_after = static_cast<uint32_t>(std::max<int64_t>(left, 1));
  }
  return true;
}

AuthVerdict FailureLimiter::Judge(bool credential_valid, const std::string& address,
                                  Clock::time_point now, uint32_t* retry_after) {
  if (credential_valid) return AuthVerdict::kAllow;
  if (Blocked(address, now, retry_after)) return AuthVerdict::kRateLimited;
  RecordFailure(address, now);
  return AuthVerdict::kUnauthorized;
}

void FailureLimiter::RecordFailure(const std::string& client, Clock::time_point now) {
  const std::string address = AddressKey(client);
  // Entries whose window has ended say nothing any more; drop them from the cold end (the back
  // failed least recently, so it is the first to expire).
  while (!lru_.empty()) {
    const auto back = entries_.find(lru_.back());
    if (back == entries_.end() || now < back->second.window_start + window_) break;
    entries_.erase(back);
    lru_.pop_back();
  }
  auto it = entries_.find(address);
  if (it != entries_.end()) {
    Entry& e = it->second;
    if (now >= e.window_start + window_) {
      e.window_start = now;
      e.failures = 0;
    }
    if (e.failures < UINT32_MAX) ++e.failures;
    lru_.splice(lru_.begin(), lru_, e.lru);
    return;
  }
  if (entries_.size() >= max_addresses_) {
    entries_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(address);
  entries_.emplace(address, Entry{now, 1, lru_.begin()});
}

}  // namespace mp::http

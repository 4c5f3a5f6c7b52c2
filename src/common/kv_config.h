// The `key = value` text format of monkeyproof.conf (supervisor), api.conf (API) and cli.conf
// (CLI), read in one place: one setting per line, surrounding blanks trimmed, blank lines and
// lines whose first non-blank character is '#' skipped (a comment cannot follow a value). A
// line without '=', an unknown key, a repeated key and a bad value are errors of the form
// "<origin>:<line>: <key>: <reason>". Pure code, no syscalls except ReadConfigText; any process.
// A KvSchema is filled once and then only read; Parse may run on any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mp::common {

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * kKiB;
inline constexpr uint64_t kGiB = 1024 * kMiB;

// A decimal number without sign, blanks or suffix ("0", "4096"); nullopt otherwise or on
// overflow of 64 bits.
std::optional<uint64_t> ParseKvNumber(std::string_view text);
// A size in bytes: a decimal number, or one with K, M or G (either case; powers of 1024):
// "65536", "64K", "1g". nullopt on anything else ("1KB", "1.5M", "1T") and on overflow.
std::optional<uint64_t> ParseKvSize(std::string_view text);
// The readable form of a size: 65536 -> "64K", 3 << 30 -> "3G", 1000 -> "1000".
std::string SizeText(uint64_t bytes);
// "\"abc\"" -> "abc"; anything else unchanged (the CLI allows quoted values).
std::string_view Unquote(std::string_view value);

// The keys one file accepts and where each value goes. Handlers run in file order, once per
// key; their errors are prefixed "<origin>:<line>: <key>: ".
class KvSchema {
 public:
  using Handler = std::function<Result<void>(std::string_view value)>;

  // Any value, stored as written (trimmed).
  KvSchema& String(std::string key, std::string* field);
  // An absolute path ("/..."), or "" too when `empty_ok`.
  KvSchema& Path(std::string key, std::string* field, bool empty_ok = false);
  // A decimal number in [min, max]; `max` defaults to what the field holds.
  KvSchema& Number(std::string key, uint64_t* field, uint64_t min = 0,
                   uint64_t max = std::numeric_limits<uint64_t>::max());
  KvSchema& Number(std::string key, uint32_t* field, uint64_t min = 0,
                   uint64_t max = std::numeric_limits<uint32_t>::max());
  // A size in bytes (ParseKvSize) in [min, max]; the range is printed as sizes.
  KvSchema& Size(std::string key, uint64_t* field, uint64_t min = 0,
                 uint64_t max = std::numeric_limits<uint64_t>::max());
  KvSchema& Size(std::string key, uint32_t* field, uint64_t min = 0,
                 uint64_t max = std::numeric_limits<uint32_t>::max());
  // Anything else: the handler checks and stores the value.
  KvSchema& Custom(std::string key, Handler handler);

  // Reads `text`; `origin` (a path, or a label such as "api.conf") starts every error. Stops
  // at the first error. Fields of keys the text does not set keep their values.
  [[nodiscard]] Result<void> Parse(std::string_view text, std::string_view origin) const;

 private:
  struct Key {
    std::string name;
    Handler handler;
  };
  KvSchema& Add(std::string key, Handler handler);
  std::vector<Key> keys_;
};

// Reads a config file whole. A missing file (ENOENT) gives "" when `optional`; other failures
// (a directory, no permission, more than `max_bytes`) are errors naming `config "<path>"`.
Result<std::string> ReadConfigText(const std::string& path, bool optional, size_t max_bytes = kMiB);

}  // namespace mp::common

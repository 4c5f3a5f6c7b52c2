// Strict reading of JSON objects: fields of fixed types, required or optional, unknown fields
// rejected, caps on string sizes and array counts, integer ranges. Every problem is recorded
// as "<JSON pointer>: <reason>", e.g. "/limits/memory_max_bytes: expected unsigned integer, got
// string". Used by both daemons (wire messages) and usable by file loaders. Pure code: no
// syscalls, no exceptions escape (nlohmann's are caught in ParseJson). One FieldErrors and its
// readers belong to one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/limits.h"
#include "common/result.h"

namespace mp::wire {

struct ParseOptions {
  size_t max_depth = 16;        // nesting of objects and arrays; the root container is level 1
  bool allow_comments = false;  // nlohmann's ignore_comments (for config files, not the wire)
};

// Parses `text` into `*out`. Rejects invalid JSON and invalid UTF-8 (nlohmann's lexer),
// trailing bytes, nesting deeper than options.max_depth, and duplicate keys in one object
// (nlohmann would silently keep the last; the error names the object by its JSON pointer when
// it is not the root). Errors have errnum 0 and start with "JSON: ".
Result<void> ParseJson(std::string_view text, nlohmann::json* out,
                       const ParseOptions& options = {});

// One problem with one field.
struct FieldError {
  std::string pointer;           // RFC 6901 JSON pointer; "" is the whole document
  std::string reason;            // e.g. "expected unsigned integer, got string"
  std::string ToString() const;  // "<pointer>: <reason>", or "<reason>" for the root
};

// Sticky error list shared by the readers of one document: every problem is collected (the
// first kMaxKept are kept, the rest only counted), so a loader can print them all while the
// wire reports the first.
class FieldErrors {
 public:
  static constexpr size_t kMaxKept = 16;

  // A file loader that lists every error passes a larger `max_kept` (its input is bounded).
  explicit FieldErrors(size_t max_kept = kMaxKept) : max_kept_(max_kept) {}

  void Add(std::string pointer, std::string reason);
  [[nodiscard]] bool empty() const { return count_ == 0; }
  [[nodiscard]] size_t count() const { return count_; }  // including those not kept
  [[nodiscard]] const std::vector<FieldError>& kept() const { return kept_; }
  // The first error as an Error (errnum 0), with " (and N more)" when there were more.
  // Precondition: !empty().
  [[nodiscard]] Error ToError() const;

 private:
  size_t max_kept_;
  std::vector<FieldError> kept_;
  size_t count_ = 0;
};

// Caps and shape of one string value. Every string is also refused if it contains a NUL byte,
// since strings here end up as argv, envp, paths or log text.
struct StringRule {
  size_t min_bytes = 0;
  size_t max_bytes = 0;
  bool (*valid)(std::string_view) = nullptr;  // extra shape check, or null
  std::string_view shape;                     // what `valid` wants, quoted in the error text
};

using UintRange = common::UintRange;  // common/limits.h
struct IntRange {
  int64_t min = INT64_MIN;
  int64_t max = INT64_MAX;
};

// Reads the members of one JSON object. Each accessor names a member, checks it and returns
// its value; on any problem it records an error in the shared FieldErrors and returns a
// neutral value (empty, 0, nullopt), so decoding continues and the caller checks
// FieldErrors::empty() at the end. Integer members must be JSON integers: 1.0 is refused.
// Call RejectUnknown() after reading every known member. The reader views `value`, which must
// outlive it.
class ObjectReader {
 public:
  // Records "expected object, got <type>" when `value` is not an object; the accessors of such
  // a reader then report nothing more.
  ObjectReader(const nlohmann::json& value, std::string pointer, FieldErrors* errors);

  [[nodiscard]] bool is_object() const { return object_ != nullptr; }
  [[nodiscard]] const std::string& pointer() const { return pointer_; }
  [[nodiscard]] bool Has(std::string_view key) const;  // present (any type); does not mark it read
  // Records "required field is missing" when `key` is absent; true when present. For members
  // read with an Opt accessor whose value then needs a check of its own.
  bool Require(std::string_view key);

  std::string String(std::string_view key, const StringRule& rule);
  std::optional<std::string> OptString(std::string_view key, const StringRule& rule);
  uint64_t Uint(std::string_view key, UintRange range);
  std::optional<uint64_t> OptUint(std::string_view key, UintRange range);
  int64_t Int(std::string_view key, IntRange range);
  std::optional<int64_t> OptInt(std::string_view key, IntRange range);
  bool Bool(std::string_view key);
  std::optional<bool> OptBool(std::string_view key);
  // A string that must be one of `names`; returns its index.
  size_t Enum(std::string_view key, std::span<const std::string_view> names);
  std::optional<size_t> OptEnum(std::string_view key, std::span<const std::string_view> names);
  // Absent is the same as []. Each item is checked with `item`.
  std::vector<std::string> StringArray(std::string_view key, size_t max_items,
                                       const StringRule& item);
  // An object of string values. Absent is the same as {}.
  std::map<std::string, std::string> StringMap(std::string_view key, size_t max_entries,
                                               const StringRule& key_rule,
                                               const StringRule& value_rule);
  // A nested object. The returned reader is not an object (and reads nothing) when the member
  // is missing or mistyped; the error is already recorded.
  ObjectReader Object(std::string_view key);
  std::optional<ObjectReader> OptObject(std::string_view key);
  // An array whose items are read one by one with Item(); returns its length (0 when absent
  // or invalid). `required` makes a missing member an error.
  size_t Array(std::string_view key, size_t max_items, bool required);
  // Item `index` of array member `key` (after Array() accepted it), read as an object.
  ObjectReader ObjectItem(std::string_view key, size_t index);

  // Records an error for member `key` (or for this object when `key` is empty).
  void Fail(std::string_view key, std::string reason);
  // Records "unknown field" for every member that no accessor read (Has() does not count).
  void RejectUnknown();
  // The same, with the members that were read named in each error, as "unknown field (known:
  // a, b)": for files that people write, where the likely cause is a misspelling.
  void RejectUnknownNamingKnown();

 private:
  struct Missing {};
  ObjectReader(Missing, std::string pointer, FieldErrors* errors);  // reports nothing
  const nlohmann::json* Find(std::string_view key, bool required);
  std::string Pointer(std::string_view key) const;
  bool CheckString(const std::string& value, const std::string& pointer, const StringRule& rule);
  void RejectUnknownWith(std::string_view suffix);

  const nlohmann::json* object_;  // null when the value is not an object
  std::string pointer_;
  FieldErrors* errors_;
  std::vector<std::string> asked_;  // members looked up, for RejectUnknown()
};

// Appends `key` to `pointer` as one RFC 6901 segment ("~" -> "~0", "/" -> "~1"). Keys longer
// than 64 bytes are cut (at a UTF-8 boundary) and marked with "...": pointers appear in error
// text, which has to stay small.
std::string AppendPointer(std::string_view pointer, std::string_view key);
// `value` in double quotes for error text: cut to 64 bytes at a UTF-8 boundary, with `"`, `\`
// and control characters escaped, so hostile input cannot forge log lines.
std::string QuoteForError(std::string_view value);
// `s` cut to at most `max_bytes` without splitting a UTF-8 sequence.
std::string_view TruncateUtf8(std::string_view s, size_t max_bytes);

}  // namespace mp::wire

#include "common/json_strict.h"

#include <algorithm>
#include <exception>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

namespace mp::wire {
namespace {

using json = nlohmann::json;
using value_t = json::value_t;

constexpr size_t kMaxQuotedBytes = 64;  // of one value or key in error text

// Thrown by the parse callback to stop nlohmann at the first structural problem; caught in
// ParseJson, never escapes.
struct ParseAbort {
  std::string reason;
};

std::string TypeName(const json& j) {
  switch (j.type()) {
    case value_t::null:
      return "null";
    case value_t::boolean:
      return "boolean";
    case value_t::string:
      return "string";
    case value_t::number_integer:
      return j.get<int64_t>() < 0 ? "negative integer" : "unsigned integer";
    case value_t::number_unsigned:
      return "unsigned integer";
    case value_t::number_float:
      return "number";
    case value_t::object:
      return "object";
    case value_t::array:
      return "array";
    case value_t::binary:
      return "binary";
    case value_t::discarded:
      break;
  }
  return "invalid value";
}

std::string Expected(std::string_view want, const json& got) {
  return "expected " + std::string(want) + ", got " + TypeName(got);
}

// Non-negative integer value of `j`, if it is one. nlohmann parses "-0" as a signed zero.
std::optional<uint64_t> AsUint(const json& j) {
  if (j.type() == value_t::number_unsigned) return j.get<uint64_t>();
  if (j.type() == value_t::number_integer && j.get<int64_t>() >= 0) {
    return static_cast<uint64_t>(j.get<int64_t>());
  }
  return std::nullopt;
}

constexpr size_t kMaxParseMessageBytes = 256;

// `s` with every byte outside printable ASCII as \xNN, cut to about `max_bytes`.
std::string Printable(std::string_view s, size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : s) {
    if (out.size() >= max_bytes) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      out += "\\x";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string RangeText(uint64_t min, uint64_t max) {
  return "[" + std::to_string(min) + ", " + std::to_string(max) + "]";
}

}  // namespace

std::string_view TruncateUtf8(std::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t end = max_bytes;
  // Step back over continuation bytes (10xxxxxx) so the cut lands before a lead byte.
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end);
}

std::string AppendPointer(std::string_view pointer, std::string_view key) {
  std::string out(pointer);
  out.push_back('/');
  const std::string_view cut = TruncateUtf8(key, kMaxQuotedBytes);
  for (char c : cut) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out.push_back(c);
    }
  }
  if (cut.size() < key.size()) out += "...";
  return out;
}

std::string QuoteForError(std::string_view value) {
  const std::string_view cut = TruncateUtf8(value, kMaxQuotedBytes);
  std::string out = "\"";
  for (char c : cut) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  if (cut.size() < value.size()) out += "...";
  return out;
}

Result<void> ParseJson(std::string_view text, json* out, const ParseOptions& options) {
  // One frame per open container, innermost last: its pointer (for the duplicate-key error),
  // and for an object the keys seen and the current one, for an array the next index.
  struct Frame {
    bool is_object;
    std::string pointer;
    std::set<std::string> keys;
    std::string key;
    size_t next_index = 0;
  };
  std::vector<Frame> open;
  const size_t max_depth = options.max_depth;
  json::parser_callback_t callback = [&open, max_depth](int depth, json::parse_event_t event,
                                                        json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        // `depth` counts the containers already open around this one.
        if (static_cast<size_t>(depth) >= max_depth) {
          throw ParseAbort{"nesting deeper than " + std::to_string(max_depth) + " levels"};
        }
        std::string pointer;
        if (!open.empty()) {
          Frame& parent = open.back();
          pointer = parent.is_object ? AppendPointer(parent.pointer, parent.key)
                                     : parent.pointer + "/" + std::to_string(parent.next_index);
        }
        open.push_back({event == json::parse_event_t::object_start, std::move(pointer), {}, {}});
        break;
      }
      case json::parse_event_t::key: {
        Frame& frame = open.back();
        frame.key = parsed.get<std::string>();
        if (!frame.keys.insert(frame.key).second) {
          throw ParseAbort{"duplicate key " + QuoteForError(frame.key) +
                           (frame.pointer.empty() ? "" : " in " + frame.pointer)};
        }
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        open.pop_back();
        [[fallthrough]];  // a closed container is one value of its parent
      case json::parse_event_t::value:
        if (!open.empty() && !open.back().is_object) ++open.back().next_index;
        break;
    }
    return true;
  };
  try {
    *out = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                       options.allow_comments);
  } catch (const ParseAbort& e) {
    return PlainError("JSON: " + e.reason);
  } catch (const json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 3: ...".
    std::string_view what = e.what();
    if (const size_t close = what.find("] "); what.starts_with("[json.") && close != what.npos) {
      what.remove_prefix(close + 2);
    }
    // nlohmann quotes the offending input ("last read: '...'") raw: it may be long, hold
    // control characters or invalid UTF-8. Error text goes to logs and back to the peer.
    return PlainError("JSON: " + Printable(what, kMaxParseMessageBytes));
  } catch (const std::exception& e) {  // std::bad_alloc and the like
    return PlainError(std::string("JSON: ") + e.what());
  }
  return Ok();
}

std::string FieldError::ToString() const {
  return pointer.empty() ? reason : pointer + ": " + reason;
}

void FieldErrors::Add(std::string pointer, std::string reason) {
  ++count_;
  if (kept_.size() < max_kept_) kept_.push_back({std::move(pointer), std::move(reason)});
}

Error FieldErrors::ToError() const {
  std::string what = kept_.empty() ? "invalid" : kept_.front().ToString();
  if (count_ > 1) what += " (and " + std::to_string(count_ - 1) + " more)";
  return PlainError(std::move(what));
}

ObjectReader::ObjectReader(const json& value, std::string pointer, FieldErrors* errors)
    : object_(value.is_object() ? &value : nullptr), pointer_(std::move(pointer)), errors_(errors) {
  if (object_ == nullptr) errors_->Add(pointer_, Expected("object", value));
}

ObjectReader::ObjectReader(Missing, std::string pointer, FieldErrors* errors)
    : object_(nullptr), pointer_(std::move(pointer)), errors_(errors) {}

std::string ObjectReader::Pointer(std::string_view key) const {
  return key.empty() ? pointer_ : AppendPointer(pointer_, key);
}

void ObjectReader::Fail(std::string_view key, std::string reason) {
  errors_->Add(Pointer(key), std::move(reason));
}

bool ObjectReader::Has(std::string_view key) const {
  return object_ != nullptr && object_->contains(std::string(key));
}

bool ObjectReader::Require(std::string_view key) { return Find(key, true) != nullptr; }

const json* ObjectReader::Find(std::string_view key, bool required) {
  if (object_ == nullptr) return nullptr;
  asked_.emplace_back(key);
  const auto it = object_->find(std::string(key));
  if (it == object_->end()) {
    if (required) Fail(key, "required field is missing");
    return nullptr;
  }
  return &*it;
}

bool ObjectReader::CheckString(const std::string& value, const std::string& pointer,
                               const StringRule& rule) {
  if (value.size() > rule.max_bytes) {
    errors_->Add(pointer, "string of " + std::to_string(value.size()) +
                              " bytes exceeds the limit of " + std::to_string(rule.max_bytes));
    return false;
  }
  if (value.size() < rule.min_bytes) {
    errors_->Add(pointer, rule.min_bytes == 1
                              ? std::string("must not be empty")
                              : "string of " + std::to_string(value.size()) +
                                    " bytes is shorter than " + std::to_string(rule.min_bytes));
    return false;
  }
  if (value.find('\0') != std::string::npos) {
    errors_->Add(pointer, "contains a NUL byte");
    return false;
  }
  if (rule.valid != nullptr && !rule.valid(value)) {
    errors_->Add(pointer, QuoteForError(value) + " is not " + std::string(rule.shape));
    return false;
  }
  return true;
}

std::optional<std::string> ObjectReader::OptString(std::string_view key, const StringRule& rule) {
  const json* j = Find(key, false);
  if (j == nullptr) return std::nullopt;
  if (!j->is_string()) {
    Fail(key, Expected("string", *j));
    return std::nullopt;
  }
  const auto& s = j->get_ref<const std::string&>();
  if (!CheckString(s, Pointer(key), rule)) return std::nullopt;
  return s;
}

std::string ObjectReader::String(std::string_view key, const StringRule& rule) {
  if (Find(key, true) == nullptr) return {};
  return OptString(key, rule).value_or(std::string());
}

std::optional<uint64_t> ObjectReader::OptUint(std::string_view key, UintRange range) {
  const json* j = Find(key, false);
  if (j == nullptr) return std::nullopt;
  const std::optional<uint64_t> v = AsUint(*j);
  if (!v) {
    Fail(key, Expected("unsigned integer", *j));
    return std::nullopt;
  }
  if (*v < range.min || *v > range.max) {
    Fail(key,
         "value " + std::to_string(*v) + " is out of range " + RangeText(range.min, range.max));
    return std::nullopt;
  }
  return v;
}

uint64_t ObjectReader::Uint(std::string_view key, UintRange range) {
  if (Find(key, true) == nullptr) return 0;
  return OptUint(key, range).value_or(0);
}

std::optional<int64_t> ObjectReader::OptInt(std::string_view key, IntRange range) {
  const json* j = Find(key, false);
  if (j == nullptr) return std::nullopt;
  int64_t v = 0;
  if (j->type() == value_t::number_integer) {
    v = j->get<int64_t>();
  } else if (j->type() == value_t::number_unsigned && j->get<uint64_t>() <= INT64_MAX) {
    v = static_cast<int64_t>(j->get<uint64_t>());
  } else if (j->type() == value_t::number_unsigned) {
    Fail(key, "value " + std::to_string(j->get<uint64_t>()) + " is out of range [" +
                  std::to_string(range.min) + ", " + std::to_string(range.max) + "]");
    return std::nullopt;
  } else {
    Fail(key, Expected("integer", *j));
    return std::nullopt;
  }
  if (v < range.min || v > range.max) {
    Fail(key, "value " + std::to_string(v) + " is out of range [" + std::to_string(range.min) +
                  ", " + std::to_string(range.max) + "]");
    return std::nullopt;
  }
  return v;
}

int64_t ObjectReader::Int(std::string_view key, IntRange range) {
  if (Find(key, true) == nullptr) return 0;
  return OptInt(key, range).value_or(0);
}

std::optional<bool> ObjectReader::OptBool(std::string_view key) {
  const json* j = Find(key, false);
  if (j == nullptr) return std::nullopt;
  if (!j->is_boolean()) {
    Fail(key, Expected("boolean", *j));
    return std::nullopt;
  }
  return j->get<bool>();
}

bool ObjectReader::Bool(std::string_view key) {
  if (Find(key, true) == nullptr) return false;
  return OptBool(key).value_or(false);
}

std::optional<size_t> ObjectReader::OptEnum(std::string_view key,
                                            std::span<const std::string_view> names) {
  const json* j = Find(key, false);
  if (j == nullptr) return std::nullopt;
  if (!j->is_string()) {
    Fail(key, Expected("string", *j));
    return std::nullopt;
  }
  const auto& s = j->get_ref<const std::string&>();
  for (size_t i = 0; i < names.size(); ++i) {
    if (s == names[i]) return i;
  }
  std::string reason = "expected one of ";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) reason += ", ";
    reason += QuoteForError(names[i]);
  }
  Fail(key, reason + "; got " + QuoteForError(s));
  return std::nullopt;
}

size_t ObjectReader::Enum(std::string_view key, std::span<const std::string_view> names) {
  if (Find(key, true) == nullptr) return 0;
  return OptEnum(key, names).value_or(0);
}

std::vector<std::string> ObjectReader::StringArray(std::string_view key, size_t max_items,
                                                   const StringRule& item) {
  std::vector<std::string> out;
  const json* j = Find(key, false);
  if (j == nullptr) return out;
  if (!j->is_array()) {
    Fail(key, Expected("array", *j));
    return out;
  }
  if (j->size() > max_items) {
    Fail(key, "array of " + std::to_string(j->size()) + " items exceeds the limit of " +
                  std::to_string(max_items));
    return out;
  }
  const std::string base = Pointer(key);
  for (size_t i = 0; i < j->size(); ++i) {
    const json& v = (*j)[i];
    const std::string at = base + "/" + std::to_string(i);
    if (!v.is_string()) {
      errors_->Add(at, Expected("string", v));
    } else if (CheckString(v.get_ref<const std::string&>(), at, item)) {
      out.push_back(v.get<std::string>());
    }
  }
  return out;
}

std::map<std::string, std::string> ObjectReader::StringMap(std::string_view key, size_t max_entries,
                                                           const StringRule& key_rule,
                                                           const StringRule& value_rule) {
  std::map<std::string, std::string> out;
  const json* j = Find(key, false);
  if (j == nullptr) return out;
  if (!j->is_object()) {
    Fail(key, Expected("object", *j));
    return out;
  }
  if (j->size() > max_entries) {
    Fail(key, "object of " + std::to_string(j->size()) + " members exceeds the limit of " +
                  std::to_string(max_entries));
    return out;
  }
  const std::string base = Pointer(key);
  for (const auto& [name, v] : j->items()) {
    const std::string at = AppendPointer(base, name);
    if (!CheckString(name, at, key_rule)) continue;
    if (!v.is_string()) {
      errors_->Add(at, Expected("string", v));
    } else if (CheckString(v.get_ref<const std::string&>(), at, value_rule)) {
      out.emplace(name, v.get<std::string>());
    }
  }
  return out;
}

std::optional<ObjectReader> ObjectReader::OptObject(std::string_view key) {
  const json* j = Find(key, false);
  if (j == nullptr) return std::nullopt;
  return ObjectReader(*j, Pointer(key), errors_);
}

ObjectReader ObjectReader::Object(std::string_view key) {
  const json* j = Find(key, true);
  // A missing member is already reported; its stand-in reader must not add "expected object".
  if (j == nullptr) return ObjectReader(Missing{}, Pointer(key), errors_);
  return ObjectReader(*j, Pointer(key), errors_);
}

size_t ObjectReader::Array(std::string_view key, size_t max_items, bool required) {
  const json* j = Find(key, required);
  if (j == nullptr) return 0;
  if (!j->is_array()) {
    Fail(key, Expected("array", *j));
    return 0;
  }
  if (j->size() > max_items) {
    Fail(key, "array of " + std::to_string(j->size()) + " items exceeds the limit of " +
                  std::to_string(max_items));
    return 0;
  }
  return j->size();
}

ObjectReader ObjectReader::ObjectItem(std::string_view key, size_t index) {
  // Only called for indexes below what Array() returned, so the member exists and is an array.
  const json& item = (*object_->find(std::string(key)))[index];
  return ObjectReader(item, Pointer(key) + "/" + std::to_string(index), errors_);
}

void ObjectReader::RejectUnknown() { RejectUnknownWith(""); }

void ObjectReader::RejectUnknownNamingKnown() {
  std::string known;
  for (size_t i = 0; i < asked_.size(); ++i) {
    // A member may have been looked up more than once (Has-then-read patterns).
    if (std::find(asked_.begin(), asked_.begin() + i, asked_[i]) != asked_.begin() + i) continue;
    known += (known.empty() ? "" : ", ") + asked_[i];
  }
  RejectUnknownWith(" (known: " + known + ")");
}

void ObjectReader::RejectUnknownWith(std::string_view suffix) {
  if (object_ == nullptr) return;
  for (const auto& [name, value] : object_->items()) {
    if (std::find(asked_.begin(), asked_.end(), name) == asked_.end()) {
      errors_->Add(AppendPointer(pointer_, name), "unknown field" + std::string(suffix));
    }
  }
}

}  // namespace mp::wire

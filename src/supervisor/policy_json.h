// The policy loader's JSON checker: typed field reads that collect every problem of one file
// as "FILE:POINTER: reason" (sticky errors), unknown fields rejected, and a parse callback
// that finds repeated keys (nlohmann keeps the last one silently). Supervisor side; one
// Checker per file being loaded, not shared between threads.
#pragma once

#include <algorithm>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sandbox/mounts.h"
#include "supervisor/policy_internal.h"

namespace mp::supervisor::internal {

using nlohmann::json;

// RFC 6901: "~" -> "~0", "/" -> "~1".
inline std::string Pointer(std::string_view parent, std::string_view token) {
  std::string out(parent);
  out += '/';
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}
inline std::string Pointer(std::string_view parent, size_t index) {
  return std::string(parent) + "/" + std::to_string(index);
}

// Collects every problem of one file (sticky errors) and reads typed fields.
class Checker {
 public:
  explicit Checker(std::string file) : file_(std::move(file)) {}

  void Fail(std::string_view ptr, const std::string& reason) {
    errors_.push_back(file_ + (ptr.empty() ? "" : ":" + std::string(ptr)) + ": " + reason);
  }
  [[nodiscard]] size_t error_count() const { return errors_.size(); }
  std::vector<std::string> TakeErrors() { return std::move(errors_); }

  // True when `j` is an object; reports its unknown keys.
  bool Object(const json& j, std::string_view ptr, std::initializer_list<std::string_view> known) {
    if (!j.is_object()) {
      Fail(ptr, std::string("must be an object, not ") + j.type_name());
      return false;
    }
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (std::find(known.begin(), known.end(), it.key()) != known.end()) continue;
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      Fail(Pointer(ptr, it.key()), "unknown field (known: " + list + ")");
    }
    return true;
  }

  const json* Field(const json& obj, std::string_view ptr, std::string_view key, bool required) {
    auto it = obj.find(key);
    if (it != obj.end()) return &*it;
    if (required) Fail(Pointer(ptr, key), "is required");
    return nullptr;
  }

  std::optional<std::string> String(const json& j, std::string_view ptr) {
    if (!j.is_string()) {
      Fail(ptr, std::string("must be a string, not ") + j.type_name());
      return std::nullopt;
    }
    const auto& s = j.get_ref<const std::string&>();
    if (s.find('\0') != std::string::npos) {
      Fail(ptr, "contains a NUL byte");
      return std::nullopt;
    }
    return s;
  }
  std::optional<std::string> String(const json& obj, std::string_view ptr, std::string_view key,
                                    bool required) {
    const json* f = Field(obj, ptr, key, required);
    return f != nullptr ? String(*f, Pointer(ptr, key)) : std::nullopt;
  }

  std::optional<bool> Bool(const json& obj, std::string_view ptr, std::string_view key) {
    const json* f = Field(obj, ptr, key, false);
    if (f == nullptr) return std::nullopt;
    if (!f->is_boolean()) {
      Fail(Pointer(ptr, key), std::string("must be true or false, not ") + f->type_name());
      return std::nullopt;
    }
    return f->get<bool>();
  }

  // One of `values`, spelled as in the file.
  template <typename E>
  std::optional<E> Enum(const json& obj, std::string_view ptr, std::string_view key, bool required,
                        std::initializer_list<std::pair<std::string_view, E>> values) {
    auto s = String(obj, ptr, key, required);
    if (!s) return std::nullopt;
    std::string list;
    size_t i = 0;
    for (const auto& [name, value] : values) {
      if (*s == name) return value;
      if (i > 0) list += i + 1 == values.size() ? " or " : ", ";
      list += Quote(name);
      ++i;
    }
    Fail(Pointer(ptr, key), "must be " + list + ", not " + Quote(*s));
    return std::nullopt;
  }

  std::optional<uint64_t> Uint(const json& obj, std::string_view ptr, std::string_view key,
                               Range range) {
    const json* f = Field(obj, ptr, key, false);
    if (f == nullptr) return std::nullopt;
    const std::string p = Pointer(ptr, key);
    const std::string bounds =
        "must be an integer from " + std::to_string(range.min) + " to " + std::to_string(range.max);
    if (!f->is_number()) {
      Fail(p, bounds + ", not " + f->type_name());
    } else if (f->is_number_float() || (f->is_number_integer() && !f->is_number_unsigned())) {
      Fail(p, bounds + ", not " + f->dump());
    } else if (const uint64_t v = f->get<uint64_t>(); v < range.min || v > range.max) {
      Fail(p, bounds + ", not " + std::to_string(v));
    } else {
      return v;
    }
    return std::nullopt;
  }

  // An array of strings; bad elements are reported and skipped.
  std::vector<std::string> Strings(const json& j, std::string_view ptr) {
    std::vector<std::string> out;
    if (!j.is_array()) {
      Fail(ptr, std::string("must be an array of strings, not ") + j.type_name());
      return out;
    }
    if (j.size() > kMaxListItems) {
      Fail(ptr, "has " + std::to_string(j.size()) + " entries; at most " +
                    std::to_string(kMaxListItems) + " are allowed");
      return out;
    }
    for (size_t i = 0; i < j.size(); ++i) {
      if (auto s = String(j[i], Pointer(ptr, i))) out.push_back(std::move(*s));
    }
    return out;
  }

  // An absolute, normalised path (sandbox::CheckPathSyntax).
  bool Path(const std::string& path, std::string_view ptr) {
    auto ok = sandbox::CheckPathSyntax(path, "path");
    if (!ok) Fail(ptr, ok.error().what);
    return ok.has_value();
  }

 private:
  std::string file_;
  std::vector<std::string> errors_;
};

// nlohmann keeps the last of two equal keys silently; a policy that says "network" twice is
// ambiguous, so the parse callback records every repeated key with its pointer.
class DuplicateKeyFinder {
 public:
  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        std::string ptr = stack_.empty() ? "" : ChildPointer();
        stack_.push_back({event == json::parse_event_t::object_start, std::move(ptr), {}, {}, 0});
        break;
      }
      case json::parse_event_t::key: {
        Frame& f = stack_.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second) duplicates_.push_back(Pointer(f.pointer, f.key));
        break;
      }
      case json::parse_event_t::value:
        if (!stack_.empty() && !stack_.back().is_object) ++stack_.back().next_index;
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        stack_.pop_back();
        break;
    }
    return true;
  }
  std::vector<std::string> duplicates_;

 private:
  struct Frame {
    bool is_object;
    std::string pointer;
    std::set<std::string> keys;
    std::string key;
    size_t next_index;
  };
  std::string ChildPointer() {
    Frame& f = stack_.back();
    return f.is_object ? Pointer(f.pointer, f.key) : Pointer(f.pointer, f.next_index++);
  }
  std::vector<Frame> stack_;
};

}  // namespace mp::supervisor::internal

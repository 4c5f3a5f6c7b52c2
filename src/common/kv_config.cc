#include "common/kv_config.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <map>

#include "common/unique_fd.h"

namespace mp::common {
namespace {

std::string_view Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\f\v");
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(" \t\r\f\v");
  return s.substr(b, e - b + 1);
}

std::string Quoted(std::string_view value) { return "\"" + std::string(value) + "\""; }

std::string RangeText(uint64_t min, uint64_t max, bool size) {
  const auto text = [size](uint64_t n) { return size ? SizeText(n) : std::to_string(n); };
  const std::string unit = size ? " bytes" : "";
  if (max == std::numeric_limits<uint64_t>::max()) return "(at least " + text(min) + unit + ")";
  return "(" + text(min) + ".." + text(max) + unit + ")";
}

// Parses with ParseKvSize or ParseKvNumber and checks [min, max]; T is the field's type.
template <typename T>
KvSchema::Handler RangedHandler(T* field, uint64_t min, uint64_t max, bool size) {
  max = std::min<uint64_t>(max, std::numeric_limits<T>::max());
  return [field, min, max, size](std::string_view value) -> Result<void> {
    const std::optional<uint64_t> v = size ? ParseKvSize(value) : ParseKvNumber(value);
    if (!v) {
      return PlainError(Quoted(value) + (size ? " is not a size (bytes, or a number with K, M or G)"
                                              : " is not a number"));
    }
    if (*v < min || *v > max) {
      return PlainError(std::string(value) + " is out of range " + RangeText(min, max, size));
    }
    *field = static_cast<T>(*v);
    return Ok();
  };
}

}  // namespace

std::optional<uint64_t> ParseKvNumber(std::string_view text) {
  uint64_t out = 0;
  // from_chars takes no sign, no blanks and no "0x"; a partial parse is refused below.
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return out;
}

std::optional<uint64_t> ParseKvSize(std::string_view text) {
  uint64_t mult = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K':
      case 'k':
        mult = kKiB;
        break;
      case 'M':
      case 'm':
        mult = kMiB;
        break;
      case 'G':
      case 'g':
        mult = kGiB;
        break;
      default:
        break;
    }
    if (mult != 1) text.remove_suffix(1);
  }
  const std::optional<uint64_t> n = ParseKvNumber(text);
  if (!n || *n > std::numeric_limits<uint64_t>::max() / mult) return std::nullopt;
  return *n * mult;
}

std::string SizeText(uint64_t bytes) {
  if (bytes != 0 && bytes % kGiB == 0) return std::to_string(bytes / kGiB) + "G";
  if (bytes != 0 && bytes % kMiB == 0) return std::to_string(bytes / kMiB) + "M";
  if (bytes != 0 && bytes % kKiB == 0) return std::to_string(bytes / kKiB) + "K";
  return std::to_string(bytes);
}

std::string_view Unquote(std::string_view value) {
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    return value.substr(1, value.size() - 2);
  }
  return value;
}

KvSchema& KvSchema::Add(std::string key, Handler handler) {
  keys_.push_back({std::move(key), std::move(handler)});
  return *this;
}

KvSchema& KvSchema::String(std::string key, std::string* field) {
  return Add(std::move(key), [field](std::string_view value) -> Result<void> {
    *field = value;
    return Ok();
  });
}

KvSchema& KvSchema::Path(std::string key, std::string* field, bool empty_ok) {
  return Add(std::move(key), [field, empty_ok](std::string_view value) -> Result<void> {
    if (!(value.empty() && empty_ok) && (value.empty() || value.front() != '/')) {
      return PlainError(Quoted(value) + " is not an absolute path");
    }
    *field = value;
    return Ok();
  });
}

KvSchema& KvSchema::Number(std::string key, uint64_t* field, uint64_t min, uint64_t max) {
  return Add(std::move(key), RangedHandler(field, min, max, false));
}

KvSchema& KvSchema::Number(std::string key, uint32_t* field, uint64_t min, uint64_t max) {
  return Add(std::move(key), RangedHandler(field, min, max, false));
}

KvSchema& KvSchema::Size(std::string key, uint64_t* field, uint64_t min, uint64_t max) {
  return Add(std::move(key), RangedHandler(field, min, max, true));
}

KvSchema& KvSchema::Size(std::string key, uint32_t* field, uint64_t min, uint64_t max) {
  return Add(std::move(key), RangedHandler(field, min, max, true));
}

KvSchema& KvSchema::Custom(std::string key, Handler handler) {
  return Add(std::move(key), std::move(handler));
}

Result<void> KvSchema::Parse(std::string_view text, std::string_view origin) const {
  std::map<std::string_view, int> seen;  // key -> the line that set it
  int lineno = 0;
  while (!text.empty()) {
    ++lineno;
    const size_t nl = text.find('\n');
    const std::string_view line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    const std::string where = std::string(origin) + ":" + std::to_string(lineno);
    const size_t eq = line.find('=');
    const std::string_view key = eq == std::string_view::npos ? "" : Trim(line.substr(0, eq));
    if (key.empty()) return PlainError(where + ": expected key = value");
    const std::string at = where + ": " + std::string(key);
    const auto known =
        std::find_if(keys_.begin(), keys_.end(), [key](const Key& k) { return k.name == key; });
    if (known == keys_.end()) return PlainError(at + ": unknown key");
    // A repeated key is a mistake (an edit that missed the first one), not an override.
    if (const auto [it, fresh] = seen.emplace(known->name, lineno); !fresh) {
      return PlainError(at + ": set twice (first on line " + std::to_string(it->second) + ")");
    }
    if (Result<void> ok = known->handler(Trim(line.substr(eq + 1))); !ok) {
      return std::move(ok).error().Wrap(at);
    }
  }
  return Ok();
}

Result<std::string> ReadConfigText(const std::string& path, bool optional, size_t max_bytes) {
  const std::string what = "config \"" + path + "\"";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    // errno is saved before the message is built: allocating it may change errno.
    const int err = errno;
    if (optional && err == ENOENT) return std::string();
    return ErrnoError(err, "open(" + what + ")");
  }
  std::string text;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;  // EISDIR for a directory
      return ErrnoError(err, "read(" + what + ")");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > max_bytes) {
      return PlainError(what + " is larger than " + SizeText(max_bytes) + " bytes");
    }
  }
  return text;
}

}  // namespace mp::common

#include "common/names.h"

#include <algorithm>

namespace mp::common {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsAlpha(char c) { return IsLower(c) || (c >= 'A' && c <= 'Z'); }

}  // namespace

bool IsPresetName(std::string_view name) {
  const auto lower_alnum = [](char c) { return IsDigit(c) || IsLower(c); };
  return !name.empty() && name.size() <= kMaxPresetNameBytes && lower_alnum(name[0]) &&
         std::all_of(name.begin(), name.end(), [&](char c) { return lower_alnum(c) || c == '-'; });
}

bool IsEnvName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxEnvNameBytes && !IsDigit(name[0]) &&
         std::all_of(name.begin(), name.end(),
                     [](char c) { return IsAlpha(c) || IsDigit(c) || c == '_'; });
}

bool IsValidSessionId(std::string_view id) {
  if (id.size() < 3 || id.size() > 2 + kMaxSessionIdChars || !id.starts_with("s-")) return false;
  const std::string_view rest = id.substr(2);
  return std::all_of(rest.begin(), rest.end(), [](char c) { return IsAlpha(c) || IsDigit(c); });
}

bool IsPrincipalLabel(std::string_view label) {
  return !label.empty() && label.size() <= kMaxPrincipalBytes && label.front() != ' ' &&
         label.back() != ' ' &&
         std::all_of(label.begin(), label.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

bool IsWorkspacePath(std::string_view path) {
  if (path.size() < 2 || path.size() > kMaxWorkspacePathBytes || path.front() != '/' ||
      path.back() == '/') {
    return false;
  }
  for (char c : path) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

}  // namespace mp::common

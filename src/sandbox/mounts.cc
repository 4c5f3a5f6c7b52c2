#include "sandbox/mounts.h"

#include <climits>
#include <cstdlib>
#include <memory>

namespace mp::sandbox {

Result<void> CheckPathSyntax(std::string_view path, std::string_view what) {
  const std::string label = std::string(what) + " \"" + std::string(path) + "\"";
  if (path.empty() || path.front() != '/') return PlainError(label + " is not an absolute path");
  if (path.size() >= PATH_MAX) return PlainError(label + " is longer than PATH_MAX");
  if (path.find('\0') != std::string_view::npos) return PlainError(label + " contains a NUL byte");
  if (path == "/") return Ok();
  if (path.back() == '/') return PlainError(label + " ends with '/'");
  size_t pos = 1;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view comp = path.substr(pos, end - pos);
    if (comp.empty()) return PlainError(label + " contains an empty component");
    if (comp == "." || comp == "..")
      return PlainError(label + " contains a '" + std::string(comp) + "' component");
    pos = end + 1;
  }
  return Ok();
}

Result<void> CheckHostPathHasNoSymlink(const std::string& path, std::string_view what) {
  MP_RETURN_IF_ERROR(CheckPathSyntax(path, what));
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr), &std::free);
  if (!real) return ErrnoError(std::string(what) + " \"" + path + "\"");
  if (path != real.get()) {
    return PlainError(std::string(what) + " \"" + path +
                      "\" goes through a symlink (it resolves to \"" + real.get() + "\")");
  }
  return Ok();
}

bool PathIsWithin(std::string_view path, std::string_view root) {
  if (root == "/") return !path.empty() && path.front() == '/';
  if (path.size() < root.size() || path.substr(0, root.size()) != root) return false;
  return path.size() == root.size() || path[root.size()] == '/';
}

}  // namespace mp::sandbox

#include "sandbox/mounts.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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

Result<std::vector<RootEntry>> ListViewRootEntries(const std::string& root) {
  struct CloseDir {
    void operator()(DIR* d) const { ::closedir(d); }
  };
  std::unique_ptr<DIR, CloseDir> dir(::opendir(root.c_str()));
  if (!dir) return ErrnoError("opendir(\"" + root + "\")");
  std::vector<RootEntry> out;
  for (;;) {
    errno = 0;
    const dirent* d = ::readdir(dir.get());
    if (d == nullptr) {
      if (errno != 0) return ErrnoError("readdir(\"" + root + "\")");
      break;
    }
    const std::string_view name = d->d_name;
    const bool listed = std::find(std::begin(kViewRootNames), std::end(kViewRootNames), name) !=
                        std::end(kViewRootNames);
    if (!listed && !name.starts_with(kViewRootPrefix)) continue;
    struct stat st {};
    if (::fstatat(::dirfd(dir.get()), d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    RootEntry e{std::string(name), std::nullopt};
    if (S_ISLNK(st.st_mode)) {
      std::string target(PATH_MAX, '\0');
      const ssize_t n = ::readlinkat(::dirfd(dir.get()), d->d_name, target.data(), target.size());
      if (n <= 0 || static_cast<size_t>(n) >= target.size()) continue;
      target.resize(static_cast<size_t>(n));
      e.link = std::move(target);
    } else if (!S_ISDIR(st.st_mode)) {
      continue;
    }
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(),
            [](const RootEntry& a, const RootEntry& b) { return a.name < b.name; });
  return out;
}

}  // namespace mp::sandbox

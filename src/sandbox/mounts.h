// Validation of the paths a filesystem view names, in the supervisor before
// clone. The child re-checks atomically with openat2(RESOLVE_NO_SYMLINKS);
// this is where a request gets a clear error. Supervisor side; pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mp::sandbox {

// Absolute, at most 4095 bytes, no NUL, no empty, "." or ".." component, no
// trailing slash (except "/"). `what` names the path in the error.
Result<void> CheckPathSyntax(std::string_view path, std::string_view what);

// CheckPathSyntax, and the path exists on the host and no component of it is
// a symlink (its realpath is itself).
Result<void> CheckHostPathHasNoSymlink(const std::string& path, std::string_view what);

// True when `path` equals `root` or lies below it (both normalised absolute).
bool PathIsWithin(std::string_view path, std::string_view root);

// The names in the host's root that every sandbox shows (read-only): the programs, libraries
// and configuration a session needs, and nothing of /run, /home, /root, /srv or /var.
inline constexpr std::string_view kViewRootNames[] = {"usr", "bin", "sbin", "etc", "opt"};
inline constexpr std::string_view kViewRootPrefix = "lib";  // lib, lib32, lib64, libx32

struct RootEntry {
  std::string name;
  std::optional<std::string> link;  // a symlink's target; empty: a directory
};

// The entries of `root` (the host's "/") the allowlisted view shows: kViewRootNames and the
// names starting with kViewRootPrefix that are directories or symlinks, in a stable order.
// Anything else (a file, a socket) is left out.
Result<std::vector<RootEntry>> ListViewRootEntries(const std::string& root = "/");

}  // namespace mp::sandbox

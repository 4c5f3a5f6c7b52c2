// Validation of the paths a filesystem view names, in the supervisor before
// clone. The child re-checks atomically with openat2(RESOLVE_NO_SYMLINKS);
// this is where a request gets a clear error. Supervisor side; pure functions.
#pragma once

#include <string>
#include <string_view>

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

}  // namespace mp::sandbox

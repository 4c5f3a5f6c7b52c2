// Reading policy files and directories: ownership and size checks, then ParsePolicy; a
// PolicySet loads every *.json of one directory all-or-nothing. Also the checked reader of
// small files that credentials are read with (spawn_request.cc).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <utility>

#include "common/unique_fd.h"
#include "supervisor/policy.h"
#include "supervisor/policy_internal.h"

namespace mp::supervisor {
namespace internal {

// Reads a regular file of at most `max_bytes`, checked against `rules`.
Result<std::string> ReadSmallFile(int dirfd, const std::string& path, const std::string& label,
                                  size_t max_bytes, FileRules rules) {
  const std::optional<uid_t> owner = rules.owner;
  const bool private_to_group = rules.private_to_group;
  // O_NONBLOCK: opening a FIFO planted in place of the file must not block the supervisor.
  UniqueFd fd(
      ::openat(dirfd, path.c_str(),
               O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (rules.no_symlink ? O_NOFOLLOW : 0)));
  if (!fd) return ErrnoError("open(" + label + ")");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("fstat(" + label + ")");
  if (!S_ISREG(st.st_mode)) return PlainError(label + " is not a regular file");
  if (owner && st.st_uid != *owner) {
    return PlainError(label + " belongs to uid " + std::to_string(st.st_uid) + ", not uid " +
                      std::to_string(*owner));
  }
  if (owner && (st.st_mode & (private_to_group ? 027 : 022)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return PlainError(label + " has mode " + mode +
                      (private_to_group ? ": group may not write it and others may not read it"
                                        : ": group and others may not write it"));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return PlainError(label + " is larger than " + std::to_string(max_bytes) + " bytes");
  }
  std::string out;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read(" + label + ")");
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      return PlainError(label + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  return out;
}

}  // namespace internal
namespace {

using namespace internal;  // NOLINT(google-build-using-namespace): this file's own helpers

PolicyLoad LoadFile(const std::string& path, std::optional<uid_t> owner) {
  auto text = ReadSmallFile(AT_FDCWD, path, "policy file " + Quote(path), kMaxPolicyFileBytes,
                            {owner, false, false});
  if (!text) return {nullptr, {path + ": " + text.error().ToString()}};
  return ParsePolicy(path, *text);
}

}  // namespace

PolicyLoad LoadPolicyFile(const std::string& path, PolicyLoadOptions options) {
  return LoadFile(path, options.require_root_owned ? std::optional<uid_t>(0) : std::nullopt);
}

Result<PolicySet> PolicySet::Load(const std::string& dir, PolicyLoadOptions options) {
  PolicySet set;
  set.dir_ = dir;
  set.options_ = options;
  std::vector<std::string> errors;
  const std::optional<uid_t> owner =
      options.require_root_owned ? std::optional<uid_t>(0) : std::nullopt;

  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) return ErrnoError("open(policy directory " + Quote(dir) + ")");
  struct stat st {};
  if (::fstat(dfd.get(), &st) != 0) return ErrnoError("fstat(policy directory " + Quote(dir) + ")");
  if (owner && (st.st_uid != *owner || (st.st_mode & 022) != 0)) {
    errors.push_back(dir +
                     ": the policy directory must belong to root and not be writable by "
                     "group or others");
  }
  DIR* d = ::fdopendir(dfd.Release());
  if (d == nullptr) return ErrnoError("fdopendir(policy directory " + Quote(dir) + ")");
  std::vector<std::string> names;
  errno = 0;
  while (const struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (!n.starts_with('.') && n.ends_with(".json")) names.push_back(n);
  }
  const int readdir_errno = errno;
  ::closedir(d);
  if (readdir_errno != 0) return ErrnoError(readdir_errno, "readdir(" + Quote(dir) + ")");
  std::sort(names.begin(), names.end());

  for (const auto& n : names) {
    PolicyLoad load = LoadFile(dir + "/" + n, owner);
    errors.insert(errors.end(), load.errors.begin(), load.errors.end());
    if (load.policy) set.policies_.emplace(load.policy->name, std::move(load.policy));
  }
  if (errors.empty()) {
    auto exec = set.policies_.find("exec");
    if (exec == set.policies_.end()) {
      errors.push_back(dir + ": no exec.json (the policy of exec sessions without a preset)");
    } else if (exec->second->type != SessionType::kExec) {
      errors.push_back(exec->second->file + ":/type: the exec policy must have type \"exec\"");
    }
  }
  if (!errors.empty()) {
    std::string what;
    for (const auto& e : errors) what += (what.empty() ? "" : "\n") + e;
    return PlainError(std::move(what));
  }
  return set;
}

std::shared_ptr<const Policy> PolicySet::Find(std::string_view name) const {
  auto it = policies_.find(name);
  return it == policies_.end() ? nullptr : it->second;
}

}  // namespace mp::supervisor

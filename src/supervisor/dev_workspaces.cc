#include "supervisor/dev_workspaces.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "common/unique_fd.h"

namespace mp::supervisor {
namespace {

struct Owner {
  uid_t uid;
  gid_t gid;
};

Result<Owner> RunAsOwner(const std::string& name, const Policy& policy) {
  const struct passwd* pw = ::getpwnam(policy.run_as.user.c_str());
  if (pw == nullptr) {
    return PlainError("policy \"" + name + "\": run_as.user \"" + policy.run_as.user +
                      "\" does not exist; cannot create its default workspace \"" +
                      policy.default_workspace + "\"");
  }
  Owner owner{pw->pw_uid, pw->pw_gid};
  if (!policy.run_as.group.empty()) {
    const struct group* gr = ::getgrnam(policy.run_as.group.c_str());
    if (gr == nullptr) {
      return PlainError("policy \"" + name + "\": run_as.group \"" + policy.run_as.group +
                        "\" does not exist");
    }
    owner.gid = gr->gr_gid;
  }
  return owner;
}

// Opens the directory `name` in `parent` without following a symlink.
Result<UniqueFd> OpenDirNoFollow(int parent, const std::string& name, const std::string& path) {
  UniqueFd fd(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ELOOP || errno == ENOTDIR) {
      return PlainError("\"" + path +
                        "\" is a symlink or not a directory; dev mode creates default "
                        "workspaces only through real directories (remove it, or create the "
                        "workspace yourself)");
    }
    return ErrnoError("open \"" + path + "\"");
  }
  return fd;
}

// `path` (absolute, normalised: the policy loader checked it) created with `mode` and given to
// `owner`. Each existing component is opened with O_NOFOLLOW; each one below which something
// is created must belong to root and be writable by nobody else.
Result<void> CreateOwnedDirectory(const std::string& path, Owner owner, mode_t mode) {
  UniqueFd dir(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return ErrnoError("open \"/\"");
  std::string so_far;
  size_t pos = 1;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    const std::string name = path.substr(pos, next - pos);
    const bool last = next == path.size();
    const std::string parent_path = so_far.empty() ? "/" : so_far;
    so_far += "/" + name;
    pos = next + 1;

    struct stat parent {};
    if (::fstat(dir.get(), &parent) != 0) return ErrnoError("stat \"" + parent_path + "\"");
    const bool trusted = parent.st_uid == 0 && (parent.st_mode & (S_IWGRP | S_IWOTH)) == 0;
    if (::mkdirat(dir.get(), name.c_str(), last ? mode : 0755) == 0) {
      if (!trusted) {
        // Created below a directory someone else controls: undo, and say why.
        (void)::unlinkat(dir.get(), name.c_str(), AT_REMOVEDIR);
        return PlainError("cannot create \"" + so_far + "\": its parent \"" + parent_path +
                          "\" is not a root-owned directory that only root may write; create "
                          "the default workspace yourself");
      }
      MP_TRY(UniqueFd created, OpenDirNoFollow(dir.get(), name, so_far));
      if (last && (::fchown(created.get(), owner.uid, owner.gid) != 0 ||
                   ::fchmod(created.get(), mode) != 0)) {
        return ErrnoError("chown/chmod \"" + so_far + "\"");
      }
      dir = std::move(created);
      continue;
    }
    if (errno != EEXIST) return ErrnoError("mkdir \"" + so_far + "\"");
    if (last) return Ok();  // there already: left as it is
    MP_TRY(dir, OpenDirNoFollow(dir.get(), name, so_far));
  }
  return Ok();
}

}  // namespace

Result<void> CreateDefaultWorkspaces(const PolicySet& policies) {
  for (const auto& [name, policy] : policies.all()) {
    const std::string& dir = policy->default_workspace;
    if (dir.empty()) continue;
    struct stat st {};
    if (::lstat(dir.c_str(), &st) == 0) continue;  // exists (the spawn checks what it is)
    MP_TRY(const Owner owner, RunAsOwner(name, *policy));
    if (auto created = CreateOwnedDirectory(dir, owner, 0755); !created) {
      return PlainError("policy \"" + name + "\": default workspace: " + created.error().what);
    }
    std::fprintf(stderr,
                 "monkeyproofd: dev mode: created the default workspace %s of policy %s "
                 "(owner %s)\n",
                 dir.c_str(), name.c_str(), policy->run_as.user.c_str());
  }
  return Ok();
}

}  // namespace mp::supervisor

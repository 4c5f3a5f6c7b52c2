// The policy model: hidden paths, tightening a policy by a request's limits, and resolving a
// request's workspace. Loading is in policy_loader.cc and policy_set.cc, spawn requests in
// spawn_request.cc.
#include "supervisor/policy.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

#include "common/names.h"
#include "common/unique_fd.h"
#include "sandbox/mounts.h"
#include "supervisor/policy_internal.h"

namespace mp::supervisor {

using namespace internal;  // NOLINT(google-build-using-namespace): this file's own helpers

std::vector<std::string> Policy::HiddenPaths() const {
  std::vector<std::string> out(kAlwaysHiddenPaths.begin(), kAlwaysHiddenPaths.end());
  out.insert(out.end(), hide.begin(), hide.end());
  return out;
}

std::vector<std::string> PolicyWarnings(const Policy& policy) {
  std::vector<std::string> out;
  if (!policy.bypasses_agent_permissions) return out;
  const std::string at = policy.file + ":";
  if (policy.network == sandbox::NetworkMode::kHost) {
    out.push_back(at +
                  "/network: warning: an agent preset that bypasses its own permission prompts "
                  "runs on the host's network: a prompt injection in what it reads can send "
                  "the workspace and its key anywhere; prefer {\"mode\": \"allowlist\", ...} "
                  "with its model API in network.gateway (docs/policies.md, \"The credential "
                  "gateway\")");
  }
  if (!policy.env.secrets.empty() || !policy.env.optional_secrets.empty()) {
    out.push_back(at + (policy.env.secrets.empty() ? "/env/optional_secrets" : "/env/secrets") +
                  ": warning: an agent preset that bypasses its own permission prompts holds a "
                  "key in its environment, where the agent (and a prompt injection) can read "
                  "it; network.gateway keeps the key outside the session");
  }
  return out;
}

Result<EffectivePolicy> Tighten(const Policy& policy, const RequestedLimits& requested) {
  EffectivePolicy e{policy};
  // `zero_is_none`: 0 means "no limit", the loosest value there is.
  auto lower = [&](std::string_view field, const std::optional<uint64_t>& want,
                   std::optional<uint64_t> have, Range range, bool zero_is_none,
                   auto assign) -> Result<void> {
    if (!want) return Ok();
    if ((*want < range.min && !(zero_is_none && *want == 0)) || *want > range.max) {
      return CodedError(ErrorCode::kBadRequest, std::string(field) + ": requested " +
                                                    std::to_string(*want) + " is outside " +
                                                    std::to_string(range.min) + ".." +
                                                    std::to_string(range.max));
    }
    const bool have_none = !have || (zero_is_none && *have == 0);
    const bool want_none = zero_is_none && *want == 0;
    if (!have_none && (want_none || *want > *have)) {
      return CodedError(ErrorCode::kPolicyViolation,
                        std::string(field) + ": requested " +
                            (want_none ? std::string("0 (none)") : std::to_string(*want)) +
                            " exceeds the policy's " + std::to_string(*have) + " (policy " +
                            Quote(policy.name) + "); a request may only lower a limit");
    }
    assign(*want);
    return Ok();
  };
  PolicyLimits& l = e.policy.limits;
  PolicyDeadlines& d = e.policy.deadlines;
  MP_RETURN_IF_ERROR(lower("limits.memory_max_bytes", requested.memory_max_bytes,
                           l.memory_max_bytes, common::kMemoryMaxBytesRange, false,
                           [&](uint64_t v) { l.memory_max_bytes = v; }));
  MP_RETURN_IF_ERROR(lower("limits.memory_swap_max_bytes", requested.memory_swap_max_bytes,
                           l.memory_swap_max_bytes, common::kMemorySwapMaxBytesRange, false,
                           [&](uint64_t v) { l.memory_swap_max_bytes = v; }));
  MP_RETURN_IF_ERROR(lower("limits.pids_max", requested.pids_max, l.pids_max, common::kPidsMaxRange,
                           false, [&](uint64_t v) { l.pids_max = v; }));
  MP_RETURN_IF_ERROR(lower("limits.cpu_max_percent", requested.cpu_max_percent, l.cpu_max_percent,
                           common::kCpuMaxPercentRange, false,
                           [&](uint64_t v) { l.cpu_max_percent = v; }));
  MP_RETURN_IF_ERROR(lower("deadlines.wall_seconds", requested.wall_seconds, d.wall_seconds,
                           common::kDeadlineSecondsRange, true,
                           [&](uint64_t v) { d.wall_seconds = v; }));
  MP_RETURN_IF_ERROR(lower("deadlines.idle_seconds", requested.idle_seconds, d.idle_seconds,
                           common::kDeadlineSecondsRange, true,
                           [&](uint64_t v) { d.idle_seconds = v; }));
  return e;
}

namespace {

// The directory at `path` as an O_PATH descriptor. Only for paths the operator configured (a
// workspace root, the default workspace): those are resolved with the supervisor's access.
UniqueFd OpenConfiguredDir(const std::string& path) {
  return UniqueFd(::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
}

// The directory `rel` beneath `base` (an O_PATH descriptor), resolved by the kernel so that
// neither `..` nor a symlink leaves `base` (RESOLVE_BENEATH: an absolute symlink or one that
// climbs out fails with EXDEV) and no /proc magic link is followed. Nothing outside `base` is
// looked at, so root's access reveals nothing beyond it.
UniqueFd OpenDirBeneath(int base, const std::string& rel) {
  struct open_how how {};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  return UniqueFd(static_cast<int>(::syscall(SYS_openat2, base, rel.c_str(), &how, sizeof how)));
}

// The directory `rel` beneath `base` without following any symlink at all (RESOLVE_NO_SYMLINKS):
// a scoped token's workspace, whose every component below its root must be a real directory.
UniqueFd OpenDirNoSymlinks(int base, const std::string& rel) {
  struct open_how how {};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
  return UniqueFd(static_cast<int>(::syscall(SYS_openat2, base, rel.c_str(), &how, sizeof how)));
}

// The path the kernel reached for `fd`: /proc/self/fd's link holds it without symlinks.
std::optional<std::string> PathOf(int fd) {
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  std::string buf(PATH_MAX, '\0');
  const ssize_t n = ::readlink(link.c_str(), buf.data(), buf.size());
  if (n <= 0 || static_cast<size_t>(n) >= buf.size() || buf[0] != '/') return std::nullopt;
  buf.resize(static_cast<size_t>(n));
  return buf;
}

bool SameInode(int fd, const std::string& path) {
  struct stat a {};
  struct stat b {};
  return ::fstat(fd, &a) == 0 && ::stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
         a.st_ino == b.st_ino;
}

std::string RootsText(const Policy& policy) {
  return "the workspace roots of policy " + Quote(policy.name) + " (" +
         JoinQuoted(policy.workspace_roots) + ")";
}

// The one answer for every cwd that is not a usable workspace: missing, not a directory,
// outside the roots, a root itself, inside a hidden path, or reached through a symlink or `..`
// that leaves its root. One text and one code whatever the reason, so that a request cannot
// learn what exists where it may not go.
Error CwdRefused(const Policy& policy, const std::string& cwd) {
  std::string how = "absolute";
  if (!policy.default_workspace.empty()) {
    how += ", or relative to the default workspace " + Quote(policy.default_workspace) +
           " and below it";
  }
  return CodedError(ErrorCode::kBadRequest,
                    "cwd " + Quote(cwd) + " is not an existing directory strictly inside " +
                        RootsText(policy) + "; give a directory below one of the roots (" + how +
                        "; a root itself is refused, and symlinks and `..` may not leave the "
                        "root)")
      .At("/cwd");
}

// Whether the directory `dir`, which the kernel reached as `resolved`, may be a session's
// workspace: below a root as written (the sandbox covers the roots by those names), no root
// itself (that would bind every workspace under it into the session), in no hidden path.
bool UsableWorkspace(const Policy& policy, int dir, const std::string& resolved) {
  bool inside = false;
  for (const auto& r : policy.workspace_roots) {
    if (resolved == r || SameInode(dir, r)) return false;
    inside = inside || sandbox::PathIsWithin(resolved, r);
  }
  if (!inside) return false;
  for (const auto& h : policy.HiddenPaths()) {
    if (sandbox::PathIsWithin(resolved, h)) return false;
  }
  return true;
}

// The one answer for every cwd outside a request's cwd_within (or not usable below it): a
// 403 that reads the same whether the directory exists, is missing, or is reached through a
// symlink or `..` that leaves the workspace.
Error WithinRefused(const Policy& policy, const std::string& cwd,
                    const std::vector<std::string>& within) {
  return CodedError(ErrorCode::kPolicyViolation,
                    "cwd " + Quote(cwd) +
                        " is not an existing directory at or below the workspaces this "
                        "request may create sessions in (" +
                        JoinQuoted(within) + ", inside " + RootsText(policy) +
                        "); give one of them or a directory below one (symlinks and `..` may "
                        "not leave it, no component of the workspace itself may be a "
                        "symlink, and a root itself is refused)")
      .At("/cwd");
}

// ResolveWorkspace for a request with cwd_within: the workspace prefix is opened beneath its
// root without following any symlink, then the cwd's remainder beneath that prefix
// (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so that neither a symlink in the prefix nor one
// planted below it (by a session of the same token) reaches another workspace.
Result<std::string> ResolveWithin(const Policy& policy, const std::string& cwd,
                                  const std::vector<std::string>& within) {
  std::string want;
  if (cwd.empty()) {
    want = within.front();
  } else if (cwd.front() == '/') {
    want = cwd;
  } else if (!policy.default_workspace.empty()) {
    want = policy.default_workspace + "/" + cwd;
  }
  const std::string& shown = cwd.empty() ? within.front() : cwd;
  if (want.empty()) return WithinRefused(policy, shown, within);
  for (const std::string& prefix : within) {
    if (!common::IsWorkspacePath(prefix)) continue;
    if (!sandbox::PathIsWithin(want, prefix)) continue;
    for (const std::string& root : policy.workspace_roots) {
      if (!sandbox::PathIsWithin(prefix, root)) continue;
      const UniqueFd root_fd = OpenConfiguredDir(root);
      if (!root_fd) continue;
      const UniqueFd prefix_fd =
          OpenDirNoSymlinks(root_fd.get(), prefix == root ? "." : prefix.substr(root.size() + 1));
      if (!prefix_fd) continue;
      std::string rest = want.substr(prefix.size());
      while (!rest.empty() && rest.front() == '/') rest.erase(0, 1);
      const UniqueFd dir = OpenDirBeneath(prefix_fd.get(), rest.empty() ? "." : rest);
      if (!dir) continue;
      const std::optional<std::string> resolved = PathOf(dir.get());
      if (!resolved || !sandbox::PathIsWithin(*resolved, prefix)) continue;
      if (UsableWorkspace(policy, dir.get(), *resolved)) return *resolved;
    }
  }
  return WithinRefused(policy, shown, within);
}

}  // namespace

Result<std::string> ResolveWorkspace(const Policy& policy, const std::string& cwd,
                                     const std::vector<std::string>& within) {
  const auto bad = [](ErrorCode code, std::string what) {
    return CodedError(code, std::move(what)).At("/cwd");
  };
  if (cwd.find('\0') != std::string::npos || cwd.size() >= PATH_MAX) {
    return bad(ErrorCode::kBadRequest, "cwd contains a NUL byte or is longer than " +
                                           std::to_string(PATH_MAX - 1) + " bytes");
  }
  if (!within.empty()) return ResolveWithin(policy, cwd, within);
  const std::string& base = policy.default_workspace;
  const bool relative = !cwd.empty() && cwd.front() != '/';
  if (base.empty() && (cwd.empty() || relative)) {
    return bad(
        ErrorCode::kBadRequest,
        (cwd.empty() ? std::string("no cwd was given") : "cwd " + Quote(cwd) + " is relative") +
            ", and policy " + Quote(policy.name) +
            " has no default_workspace; give an absolute cwd inside one of " + RootsText(policy));
  }

  // The directory the request names is opened beneath the directory it must stay in: the
  // default workspace for an empty or relative cwd, else the root that the cwd literally
  // starts with. An absolute cwd that names no root is refused before any lookup.
  UniqueFd start;
  std::string rel;
  if (cwd.empty() || relative) {
    start = OpenConfiguredDir(base);
    if (!start) {
      // The host's own setup: the package and `monkeyproofd --dev` create it.
      return CodedError(ErrorCode::kHostSetup,
                        "the default workspace " + Quote(base) + " of policy " +
                            Quote(policy.name) + " cannot be opened (" + std::strerror(errno) +
                            "); create it, writable by the policy's run_as user " +
                            Quote(policy.run_as.user) + " (docs/deploy.md), or give a cwd");
    }
    rel = cwd.empty() ? "." : cwd;
  } else {
    const auto root = std::find_if(policy.workspace_roots.begin(), policy.workspace_roots.end(),
                                   [&](const std::string& r) {
                                     return cwd.size() > r.size() && sandbox::PathIsWithin(cwd, r);
                                   });
    if (root == policy.workspace_roots.end()) return CwdRefused(policy, cwd);
    start = OpenConfiguredDir(*root);
    if (!start) return CwdRefused(policy, cwd);
    rel = cwd.substr(root->size() + 1);
  }
  // Without a cwd the default workspace is the operator's choice, and a bad one is theirs to fix.
  const auto refuse = [&]() -> Error {
    if (!cwd.empty()) return CwdRefused(policy, cwd);
    return CodedError(ErrorCode::kHostSetup,
                      "the default workspace " + Quote(base) + " of policy " + Quote(policy.name) +
                          " is not a directory strictly inside " + RootsText(policy) +
                          " (a symlink, or a root itself); fix default_workspace, or give a cwd");
  };
  const UniqueFd dir = OpenDirBeneath(start.get(), rel);
  if (!dir) return refuse();
  const std::optional<std::string> resolved = PathOf(dir.get());
  if (!resolved) return refuse();

  // What the kernel reached must still read as a directory below a root as written.
  if (!UsableWorkspace(policy, dir.get(), *resolved)) return refuse();
  return *resolved;
}

}  // namespace mp::supervisor

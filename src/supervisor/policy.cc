// The policy model: hidden paths, tightening a policy by a request's limits, and resolving a
// request's workspace. Loading is in policy_loader.cc and policy_set.cc, spawn requests in
// spawn_request.cc.
#include "supervisor/policy.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "sandbox/mounts.h"
#include "supervisor/policy_internal.h"

namespace mp::supervisor {

using namespace internal;  // NOLINT(google-build-using-namespace): this file's own helpers

std::vector<std::string> Policy::HiddenPaths() const {
  std::vector<std::string> out(kAlwaysHiddenPaths.begin(), kAlwaysHiddenPaths.end());
  out.insert(out.end(), hide.begin(), hide.end());
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

// realpath(path), or the reason it failed in words (no errno suffix: these messages reach
// clients as one sentence).
Result<std::string> RealPath(const std::string& path) {
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr), &std::free);
  if (real) return std::string(real.get());
  const int err = errno;
  if (err == ENOENT || err == ENOTDIR) return Error{err, "does not exist"};
  if (err == EACCES) return Error{err, "cannot be searched by monkeyproofd (permission denied)"};
  if (err == ELOOP) return Error{err, "has a symlink loop"};
  return Error{err, std::string("cannot be resolved (") + std::strerror(err) + ")"};
}

std::string RootsText(const Policy& policy) {
  return "the workspace roots of policy " + Quote(policy.name) + " (" +
         JoinQuoted(policy.workspace_roots) + ")";
}

}  // namespace

Result<std::string> ResolveWorkspace(const Policy& policy, const std::string& cwd) {
  const auto bad = [](ErrorCode code, std::string what) {
    return CodedError(code, std::move(what)).At("/cwd");
  };
  if (cwd.find('\0') != std::string::npos || cwd.size() >= PATH_MAX) {
    return bad(ErrorCode::kBadRequest, "cwd contains a NUL byte or is longer than " +
                                           std::to_string(PATH_MAX - 1) + " bytes");
  }
  const std::string& base = policy.default_workspace;
  if (base.empty() && (cwd.empty() || cwd.front() != '/')) {
    return bad(
        ErrorCode::kBadRequest,
        (cwd.empty() ? std::string("no cwd was given") : "cwd " + Quote(cwd) + " is relative") +
            ", and policy " + Quote(policy.name) +
            " has no default_workspace; give an absolute cwd inside one of " + RootsText(policy));
  }
  if (cwd.empty()) {
    // The host's own setup: the package and `monkeyproofd --dev` create it.
    auto real = RealPath(base);
    if (!real) {
      return CodedError(ErrorCode::kHostSetup,
                        "the default workspace " + Quote(base) + " of policy " +
                            Quote(policy.name) + " " + real.error().what +
                            "; create it, writable by the policy's run_as user " +
                            Quote(policy.run_as.user) + " (docs/deploy.md), or give a cwd");
    }
  }
  const bool relative = !cwd.empty() && cwd.front() != '/';
  const std::string want = cwd.empty() ? base : relative ? base + "/" + cwd : cwd;
  const std::string shown = cwd.empty() ? "the default workspace " + Quote(base)
                            : relative  ? "cwd " + Quote(cwd) +
                                             " (relative to the default "
                                             "workspace " +
                                             Quote(base) + ")"
                                       : "cwd " + Quote(cwd);
  auto real = RealPath(want);
  if (!real) {
    return bad(ErrorCode::kBadRequest,
               shown + " " + real.error().what +
                   (real.error().errnum == ENOENT || real.error().errnum == ENOTDIR
                        ? "; create the directory first, inside one "
                          "of " +
                              RootsText(policy)
                        : std::string()));
  }
  const std::string resolved = *real;
  struct stat st {};
  if (::stat(resolved.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return bad(ErrorCode::kBadRequest, shown + " is not a directory");
  }
  if (relative) {
    // A relative cwd names a directory below the default workspace; `..` that leaves it is
    // refused even when it lands in another workspace, which only an absolute cwd may name.
    auto real_base = RealPath(base);
    if (!real_base || !sandbox::PathIsWithin(resolved, *real_base)) {
      return bad(ErrorCode::kPolicyViolation,
                 shown + " resolves to " + Quote(resolved) +
                     ", outside the default workspace; give an absolute cwd inside one of " +
                     RootsText(policy));
    }
  }
  const bool inside =
      std::any_of(policy.workspace_roots.begin(), policy.workspace_roots.end(),
                  [&](const std::string& r) { return sandbox::PathIsWithin(resolved, r); });
  if (!inside) {
    return bad(ErrorCode::kPolicyViolation,
               shown + " resolves to " + Quote(resolved) + ", outside " + RootsText(policy));
  }
  for (const auto& h : policy.HiddenPaths()) {
    if (sandbox::PathIsWithin(resolved, h)) {
      return bad(ErrorCode::kPolicyViolation, shown + " resolves to " + Quote(resolved) +
                                                  ", inside the hidden path " + Quote(h) +
                                                  ", which sessions may not see");
    }
  }
  return resolved;
}

}  // namespace mp::supervisor

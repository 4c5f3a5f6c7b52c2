// The policy model: hidden paths, tightening a policy by a request's limits, and resolving a
// request's workspace. Loading is in policy_loader.cc and policy_set.cc, spawn requests in
// spawn_request.cc.
#include "supervisor/policy.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
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

Result<std::string> ResolveWorkspace(const Policy& policy, const std::string& cwd) {
  const std::string& want = cwd.empty() ? policy.default_workspace : cwd;
  if (want.empty()) {
    return CodedError(ErrorCode::kBadRequest, "cwd: none given and policy " + Quote(policy.name) +
                                                  " has no default_workspace");
  }
  if (want.front() != '/' || want.find('\0') != std::string::npos || want.size() >= PATH_MAX) {
    return CodedError(ErrorCode::kBadRequest, "cwd " + Quote(want) + " is not an absolute path");
  }
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(want.c_str(), nullptr), &std::free);
  if (!real) return CodedError(ErrorCode::kBadRequest, "cwd " + Quote(want) + ": realpath", errno);
  const std::string resolved = real.get();
  struct stat st {};
  if (::stat(resolved.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return CodedError(ErrorCode::kBadRequest, "cwd " + Quote(want) + " is not a directory");
  }
  const bool inside =
      std::any_of(policy.workspace_roots.begin(), policy.workspace_roots.end(),
                  [&](const std::string& r) { return sandbox::PathIsWithin(resolved, r); });
  if (!inside) {
    return CodedError(ErrorCode::kPolicyViolation,
                      "cwd " + Quote(want) + " resolves to " + Quote(resolved) +
                          ", outside the workspace roots of policy " + Quote(policy.name) + " (" +
                          JoinQuoted(policy.workspace_roots) + ")");
  }
  for (const auto& h : policy.HiddenPaths()) {
    if (sandbox::PathIsWithin(resolved, h)) {
      return CodedError(ErrorCode::kPolicyViolation, "cwd " + Quote(want) + " resolves to " +
                                                         Quote(resolved) +
                                                         ", inside the hidden path " + Quote(h));
    }
  }
  return resolved;
}

}  // namespace mp::supervisor

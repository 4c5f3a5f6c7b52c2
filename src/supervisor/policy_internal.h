// Facts and helpers shared by the policy files of the supervisor (policy.cc, policy_loader.cc,
// policy_set.cc, spawn_request.cc): value ranges, the rlimit table, quoting and coded errors,
// and the checked reader of small root-owned files. Supervisor side; not part of any public
// interface. Pure helpers are thread-safe; ReadSmallFile makes syscalls.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/limits.h"
#include "common/result.h"
#include "supervisor/policy.h"

namespace mp::supervisor::internal {

constexpr uint64_t kMaxBytes = common::kMaxByteCount;
constexpr size_t kMaxPolicyFileBytes = 1 << 20;
constexpr size_t kMaxSecretBytes = 64 << 10;
using common::kMaxEnvValueBytes;
// execve refuses a single argument of MAX_ARG_STRLEN (32 pages) or more with E2BIG: the
// longest task that can be the command's last argument (PlaceTask in spawn_request.cc).
constexpr size_t kMaxArgTaskBytes = 32 * 4096 - 1;
constexpr size_t kMaxListItems = 256;
constexpr size_t kMaxWorkspaceRoots = 16;

using Range = common::UintRange;

struct RlimitField {
  std::string_view name;
  int resource;
  std::optional<uint64_t> PolicyRlimits::*member;
  Range range;
};
inline const RlimitField kRlimitFields[] = {
    {"core_bytes", RLIMIT_CORE, &PolicyRlimits::core_bytes, {0, kMaxBytes}},
    {"cpu_seconds", RLIMIT_CPU, &PolicyRlimits::cpu_seconds, {1, uint64_t{30} * 86400}},
    {"fsize_bytes", RLIMIT_FSIZE, &PolicyRlimits::fsize_bytes, {4096, kMaxBytes}},
    {"nofile", RLIMIT_NOFILE, &PolicyRlimits::nofile, {16, 1048576}},  // fs.nr_open default
    {"nproc", RLIMIT_NPROC, &PolicyRlimits::nproc, {8, 4194304}},
    {"stack_bytes", RLIMIT_STACK, &PolicyRlimits::stack_bytes, {128 << 10, 1ull << 30}},
    {"as_bytes", RLIMIT_AS, &PolicyRlimits::as_bytes, {64ull << 20, kMaxBytes}},
};

inline std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

inline std::string JoinQuoted(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + Quote(i);
  return out;
}

struct FileRules {
  std::optional<uid_t> owner;     // required owner; also: group and others may not write
  bool private_to_group = false;  // also: others may not read
  bool no_symlink = false;        // the last component may not be a symlink
};

// Reads a regular file of at most `max_bytes`, checked against `rules`. `path` is relative to
// `dirfd` (or AT_FDCWD); `label` names the file in errors.
Result<std::string> ReadSmallFile(int dirfd, const std::string& path, const std::string& label,
                                  size_t max_bytes, FileRules rules);

}  // namespace mp::supervisor::internal

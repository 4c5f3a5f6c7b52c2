// What a policy needs from the host before any session can run under it: its run_as user and
// group, its state dirs, and a preset's command. Each missing piece comes with what provides it
// (the command to run, or the package). Runs in monkeyproofd (root): at each spawn, through
// BuildSpawnRequest, and once when `--dev` starts. Reads the user database and the filesystem
// through SpawnHost and lstat(2); no state of its own, thread-compatible.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "supervisor/policy.h"

namespace mp::supervisor {

// One thing the host lacks, e.g. what = `the user "monkeyproof-session" (run_as.user) does not
// exist`, remedy = `create it with: useradd ...`.
struct HostSetupProblem {
  std::string what;
  std::string remedy;
};

// Every problem of `policy` on this host, in the order an operator fixes them: the user, its
// group, the state dirs (each must be a directory, reached without a symlink), then the
// command of a preset (looked up in the policy's PATH when host.is_executable is set; not
// checked when a policy mount or a request's PATH could provide it). Empty: ready.
std::vector<HostSetupProblem> FindHostSetupProblems(const Policy& policy, const SpawnHost& host);

// Ok, or one host_setup Error naming the policy and every problem with its remedy.
Result<void> CheckHostSetup(const Policy& policy, const SpawnHost& host);

// For `monkeyproofd --dev` at start: the policies of `policies` that cannot run yet, each
// problem once with the policies it blocks and its remedy, as lines for stderr; "" when every
// policy can run.
std::string DescribeUnreadyPolicies(const PolicySet& policies, const SpawnHost& host);

}  // namespace mp::supervisor

// `monkeyproofd check-policy [--require-root-owned] PATH...`: validates policy files (and
// directories, as the daemon loads them) without starting anything, printing every problem
// as `FILE:JSON-POINTER: reason`. For packaging, CI and operators editing
// /etc/monkeyproof/policies. Runs in the supervisor binary as any user; single-threaded.
#pragma once

namespace mp::supervisor {

// argv starts after "check-policy". Returns 0 when every path is valid, 1 when any is not,
// 2 on a usage error.
int RunCheckPolicyCommand(int argc, char** argv);

}  // namespace mp::supervisor

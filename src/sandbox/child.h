// The only code that runs between clone3 and execve, in the new namespaces.
// Runs in the child; async-signal-safe: it reads the ChildPlan, makes raw
// syscalls, and never allocates, locks, logs or throws (compiled with
// -fno-exceptions). Failures are reported as SpawnReport{step, errno, detail}.
#pragma once

#include "sandbox/child_plan.h"

namespace mp::sandbox {

// Runs the fixed sequence (see child.cc) and never returns: the process
// becomes the sandbox's init, which forks and execs the command, reaps
// orphans, forwards SIGTERM/SIGHUP to every process of the namespace and other
// signals to the command's process group, and reports the
// command's wait status before it exits.
[[noreturn]] void RunChild(const ChildPlan& plan);

}  // namespace mp::sandbox

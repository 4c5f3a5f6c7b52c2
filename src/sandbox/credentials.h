// The credential drop in the child between clone and exec: capability bounding set and
// securebits, then setgroups/setresgid/setresuid, then the remaining capability sets. Child
// side; async-signal-safe: raw syscalls only, no allocation, no locks, no exceptions.
// Failures go to the parent as SpawnReport (step + errno) and end the child.
#pragma once

#include "sandbox/child_plan.h"

namespace mp::sandbox {

// Steps 5-7 of the child's sequence (child.cc), as the plan asks (drop_capabilities,
// change_ids). The bounding-set drop needs CAP_SETPCAP, so it comes before the uid change;
// PR_SET_PDEATHSIG, which the uid change clears, is the caller's next step.
void DropCredentialsInChild(const ChildPlan& plan);

}  // namespace mp::sandbox

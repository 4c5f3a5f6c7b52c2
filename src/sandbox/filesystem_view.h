// The sandbox's filesystem view, built in the child between clone and exec (new mount
// namespace, still privileged): an allowlisted root (a fresh tmpfs with the host's /usr, /bin,
// /sbin, /lib*, /etc and /opt read-only, nothing else of the host's root), the plan's hides
// and binds, the session's private home (an overlay over its read-only seed), fresh /proc
// (masked), cgroup2, /dev and /tmp, then pivot_root into it. Child side;
// async-signal-safe: paths come from the ChildPlan, numbers are formatted into stack buffers;
// no allocation, no locks, no exceptions. Failures go to the parent as SpawnReport (step +
// errno + the path) and end the child. The supervisor-side path checks are in mounts.h.
#pragma once

#include "sandbox/child_plan.h"

namespace mp::sandbox {

// Step 2 of the child's sequence (child.cc). Every path is opened below the new root with
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS), so a link planted in a writable tree cannot
// redirect a mount. Returns with the new root as "/" and the cwd at "/".
void SetUpFilesystemInChild(const ChildPlan& plan);

}  // namespace mp::sandbox

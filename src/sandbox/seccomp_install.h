// The child-side half of seccomp: installing a filter that the supervisor compiled before
// clone (seccomp.h, CompileSeccomp). Child side; async-signal-safe: one syscall, no
// allocation, no locks, no exceptions. The unit tests (tests/unit/seccomp_test.cc) install
// filters through this same function in a forked child; child.cc calls it as its last step
// before the command is forked.
#pragma once

#include <linux/filter.h>

namespace mp::sandbox {

// In the child: installs `prog` for the calling thread with seccomp(SECCOMP_SET_MODE_FILTER,
// 0). Returns 0 or an errno (EINVAL for a null program). Order requirements:
//   - prctl(PR_SET_NO_NEW_PRIVS, 1) first. The filter is built with SCMP_FLTATR_CTL_NNP=0
//     and sets nothing itself; without no_new_privs the kernel refuses it (EACCES) unless
//     the caller has CAP_SYS_ADMIN, and then a later setuid exec would run under it with
//     gained privileges. ChildPlan's fixed sequence sets no_new_privs in step 9;
//   - last before execve: the filter denies what the child's own setup uses (mount, setns…);
//   - single-threaded caller: no TSYNC, other threads would stay unfiltered.
// The filter survives fork and execve and cannot be removed.
int InstallSeccompInChild(const sock_fprog* prog) noexcept;

}  // namespace mp::sandbox

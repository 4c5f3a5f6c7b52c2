#include "sandbox/credentials.h"

#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sandbox/child_report.h"

namespace mp::sandbox {

void DropCredentialsInChild(const ChildPlan& p) {
  const int rfd = p.report_fd;
  if (p.drop_capabilities) {
    for (int cap = 0; cap <= p.last_cap; ++cap) {
      if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
        FailInChild(rfd, ChildStep::kCapBoundingSet, errno, "PR_CAPBSET_DROP");
      }
    }
    // uid 0 gains no capabilities from exec, and nobody may undo that.
    const unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED;
    if (::prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0) {
      FailInChild(rfd, ChildStep::kCapBoundingSet, errno, "PR_SET_SECUREBITS");
    }
  }
  if (p.change_ids) {
    // Raw syscalls: glibc's wrappers broadcast to every thread of the process
    // (__nptl_setxid), taking locks a thread of the supervisor may have held
    // at clone time. This process has one thread.
    if (::syscall(SYS_setgroups, 0, nullptr) < 0)
      FailInChild(rfd, ChildStep::kSetgroups, errno, "setgroups");
    if (::syscall(SYS_setresgid, p.gid, p.gid, p.gid) < 0)
      FailInChild(rfd, ChildStep::kSetgid, errno, "setresgid");
    if (::syscall(SYS_setresuid, p.uid, p.uid, p.uid) < 0)
      FailInChild(rfd, ChildStep::kSetuid, errno, "setresuid");
  }
  if (p.drop_capabilities) {
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) {
      FailInChild(rfd, ChildStep::kCapClear, errno, "PR_CAP_AMBIENT_CLEAR_ALL");
    }
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    std::memset(data, 0, sizeof data);
    if (::syscall(SYS_capset, &hdr, data) < 0)
      FailInChild(rfd, ChildStep::kCapClear, errno, "capset");
  }
}

}  // namespace mp::sandbox

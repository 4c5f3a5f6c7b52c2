#include "sandbox/seccomp_install.h"

#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace mp::sandbox {

int InstallSeccompInChild(const sock_fprog* prog) noexcept {
  if (prog == nullptr || prog->filter == nullptr || prog->len == 0) return EINVAL;
  // Raw syscall: glibc 2.36 has no seccomp() wrapper. Flags 0: the child is single-threaded,
  // so no TSYNC; no_new_privs must already be set (see seccomp_install.h).
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0U, prog) != 0) return errno;
  return 0;
}

}  // namespace mp::sandbox

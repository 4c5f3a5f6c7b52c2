// Seccomp: a SeccompProfile (data from the policy) compiled to classic BPF, and its install.
// CompileSeccomp runs in the supervisor, before clone, through libseccomp; it allocates and
// is thread-safe (no shared state). Its install, InstallSeccompInChild, is child code and
// lives in seccomp_install.{h,cc}.
// The filter is a deny list: allow by default; the built-in floor (AlwaysDeniedGroups) and
// the profile's names answer with an errno or kill; namespace, TTY and socket rules check
// arguments; syscalls newer than libseccomp knows answer ENOSYS.
#pragma once

#include <linux/filter.h>

#include <cerrno>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "sandbox/seccomp_install.h"  // InstallSeccompInChild, the child-side half

namespace mp::sandbox {

// What a session may not call. Data: filled from the policy file (see DefaultDenyProfile).
struct SeccompProfile {
  // Group ("@mount") or syscall ("mount") names; the call fails with deny_errno.
  // Added to AlwaysDeniedGroups(), never replacing it.
  std::vector<std::string> deny;
  // Names whose call kills the whole process (SIGSYS). Wins over `deny` for the same syscall.
  std::vector<std::string> kill;
  // The errno a denied call returns, 1..4095. EPERM lets programs degrade gracefully.
  // (Denying clone3 always answers ENOSYS, see below.)
  int deny_errno = EPERM;
  // false: clone/unshare with any CLONE_NEW* flag and every setns fail with EPERM, and
  // clone3 fails with ENOSYS (BPF cannot read its struct; glibc then falls back to clone,
  // whose flags are checked).
  bool allow_new_namespaces = false;
  // Only consulted when allow_new_namespaces: false refuses CLONE_NEWUSER alone (EPERM), and
  // clone3 keeps answering ENOSYS, since its flags cannot be checked.
  bool allow_user_namespaces = false;
  // TIOCSTI (push bytes into a terminal's input: commands typed "as the user" of the
  // terminal the session was handed) and TIOCLINUX (console selection/paste) fail with EPERM.
  bool deny_tty_injection = true;
  // TIOCSETD (set a terminal's line discipline) fails with EPERM: a discipline the kernel
  // lacks is autoloaded (tty-ldisc-N) for any user while dev.tty.ldisc_autoload is 1, as on
  // Debian, and the rarely used ones (n_hdlc, n_gsm, slip, ...) are a history of CVEs.
  bool deny_line_disciplines = true;
  // socket()/socketpair() only for AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK; any other
  // family fails with EAFNOSUPPORT (module autoloading, AF_VSOCK, AF_ALG, ...).
  bool restrict_socket_families = true;
  // With restrict_socket_families, the protocol too (socket()'s third argument): AF_INET takes
  // 0, TCP, UDP and ICMP (ping sockets), AF_INET6 0, TCP, UDP and ICMPV6, AF_NETLINK only
  // NETLINK_ROUTE (0; what getaddrinfo and `ip` use), AF_UNIX any. Any other fails with
  // EPROTONOSUPPORT, so programs degrade as on a kernel without it; each would autoload its
  // module (net-pf-F-proto-P: SCTP, DCCP, L2TP, UDP-Lite, and every netlink family).
  bool restrict_socket_protocols = true;
  // Syscall numbers above the newest one libseccomp knows (NewestKnownSyscall()) fail with
  // ENOSYS. The filter allows by default, and a syscall newer than libseccomp cannot be
  // named in it: without this, a newer kernel's calls would pass unexamined.
  bool unknown_syscalls_enosys = true;
};

// Groups every filter denies whatever the profile says: what needs privileges a session never
// has, or is host-wide kernel attack surface no hosted program needs (@module, @reboot,
// @swap, @raw-io, @clock, @acct, @obsolete, @privileged-fs, @bpf).
std::span<const std::string_view> AlwaysDeniedGroups();

// The highest native syscall number libseccomp has a name for.
int NewestKnownSyscall();

// The built-in default profile: the floor above, plus @mount, @debug (ptrace,
// process_vm_*, perf_event_open, …), @keyring, @io-uring, @userfaultfd, @cpu-emulation and
// @syslog with EPERM; no new namespaces; no TIOCSTI/TIOCLINUX. Shells, node, python, git and
// compilers run under it.
SeccompProfile DefaultDenyProfile();

// A compiled filter: classic BPF instructions for the native architecture. Move-only; the
// sock_fprog returned by fprog() points into this object and stays valid while it lives,
// so a ChildPlan can carry the pointer across clone.
class SeccompProgram {
 public:
  SeccompProgram(SeccompProgram&& other) noexcept;
  SeccompProgram& operator=(SeccompProgram&& other) noexcept;
  SeccompProgram(const SeccompProgram&) = delete;
  SeccompProgram& operator=(const SeccompProgram&) = delete;
  ~SeccompProgram() = default;

  [[nodiscard]] const sock_fprog* fprog() const { return &fprog_; }
  [[nodiscard]] std::span<const sock_filter> instructions() const { return insns_; }

 private:
  friend Result<SeccompProgram> CompileSeccomp(const SeccompProfile& profile);
  explicit SeccompProgram(std::vector<sock_filter> insns);

  std::vector<sock_filter> insns_;
  sock_fprog fprog_{};
};

// Builds the filter (libseccomp, exported with seccomp_export_bpf). Errors name the bad
// entry, e.g. `seccomp profile deny[2]: unknown syscall group "@mout"`.
// Architecture: the filter holds the native ABI only; any other ABI (i386 via int $0x80 and
// x32 via the 0x40000000 bit on x86-64, AArch32 on arm64) kills the process.
Result<SeccompProgram> CompileSeccomp(const SeccompProfile& profile);

}  // namespace mp::sandbox

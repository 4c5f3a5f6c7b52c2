#include "sandbox/syscall_groups.h"

#include <seccomp.h>

#include <algorithm>
#include <string>

namespace mp::sandbox {
namespace {

using std::string_view_literals::operator""sv;  // NOLINT(misc-unused-using-decls): used by the
                                                // table

// Group contents are facts about the kernel's syscall table (cross-checked against systemd's
// seccomp-util.c). Every name must be known to libseccomp 2.5.4, which knows syscalls up to
// cachestat (Linux 6.5); seccomp_test checks this. Newer syscalls (open_tree_attr, listmount,
// statmount, mseal, …) cannot be named until libseccomp learns them.

// clang-format off
// Documentary: what every program needs. Never denied (CompileSeccomp rejects it).
constexpr std::string_view kDefault[] = {
    "arch_prctl", "brk", "clock_getres", "clock_gettime", "clock_nanosleep", "close", "execve",
    "exit", "exit_group", "futex", "get_robust_list", "getegid", "geteuid", "getgid", "getpid",
    "getppid", "getrandom", "gettid", "gettimeofday", "getuid", "madvise", "membarrier", "mmap",
    "mprotect", "munmap", "nanosleep", "prlimit64", "read", "restart_syscall", "rseq",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sched_yield", "set_robust_list",
    "set_thread_area", "set_tid_address", "sigreturn", "time", "write",
};
constexpr std::string_view kAcct[] = {"acct"};
constexpr std::string_view kBpf[] = {"bpf"};
constexpr std::string_view kClock[] = {
    "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_settime", "clock_settime64",
    "settimeofday", "stime",
};
constexpr std::string_view kCpuEmulation[] = {
    "modify_ldt", "subpage_prot", "switch_endian", "vm86", "vm86old",
};
constexpr std::string_view kDebug[] = {
    "kcmp", "lookup_dcookie", "perf_event_open", "pidfd_getfd", "process_vm_readv",
    "process_vm_writev", "ptrace", "rtas", "s390_runtime_instr", "sys_debug_setcontext",
};
constexpr std::string_view kIoUring[] = {"io_uring_enter", "io_uring_register", "io_uring_setup"};
constexpr std::string_view kKeyring[] = {"add_key", "keyctl", "request_key"};
constexpr std::string_view kModule[] = {"delete_module", "finit_module", "init_module"};
constexpr std::string_view kMount[] = {
    "chroot", "fsconfig", "fsmount", "fsopen", "fspick", "mount", "mount_setattr", "move_mount",
    "open_tree", "pivot_root", "umount", "umount2",
};
constexpr std::string_view kNamespaces[] = {"setns", "unshare"};
constexpr std::string_view kObsolete[] = {
    "_sysctl", "afs_syscall", "bdflush", "break", "create_module", "ftime", "get_kernel_syms",
    "getpmsg", "gtty", "idle", "lock", "mpx", "nfsservctl", "prof", "profil", "putpmsg",
    "query_module", "security", "sgetmask", "ssetmask", "stty", "sysfs", "tuxcall", "ulimit",
    "uselib", "ustat", "vserver",
};
constexpr std::string_view kPrivilegedFs[] = {
    "name_to_handle_at", "open_by_handle_at", "quotactl", "quotactl_fd",
};
constexpr std::string_view kRawIo[] = {
    "ioperm", "iopl", "pciconfig_iobase", "pciconfig_read", "pciconfig_write",
    "s390_pci_mmio_read", "s390_pci_mmio_write",
};
constexpr std::string_view kReboot[] = {"kexec_file_load", "kexec_load", "reboot"};
constexpr std::string_view kSwap[] = {"swapoff", "swapon"};
constexpr std::string_view kSyslog[] = {"syslog"};
constexpr std::string_view kUserfaultfd[] = {"userfaultfd"};
// clang-format on

constexpr SyscallGroup kGroups[] = {
    {"@default"sv,
     "What every program needs (exit, memory, signals, time, futex): documentation only; "
     "it cannot be denied"sv,
     kDefault},
    {"@acct"sv, "Process accounting to a file (needs CAP_SYS_PACCT)"sv, kAcct},
    {"@bpf"sv,
     "eBPF programs and maps: a large in-kernel attack surface (JIT, verifier); "
     "perf_event_open is in @debug"sv,
     kBpf},
    {"@clock"sv, "Set or slew the system clocks (a host-wide effect)"sv, kClock},
    {"@cpu-emulation"sv,
     "Segment tables and CPU-mode emulation (modify_ldt, vm86): legacy code paths with a "
     "history of kernel bugs; only Wine-style emulators use them"sv,
     kCpuEmulation},
    {"@debug"sv,
     "Debugging, tracing and profiling: ptrace, cross-process memory access "
     "(process_vm_*), kcmp, stealing fds (pidfd_getfd) and perf_event_open"sv,
     kDebug},
    {"@io-uring"sv,
     "io_uring: its operations (open, connect, …) run without passing the seccomp filter, "
     "and it has been a steady source of kernel bugs"sv,
     kIoUring},
    {"@keyring"sv, "Kernel keyrings: keys are not namespaced, and the code has a history of bugs"sv,
     kKeyring},
    {"@module"sv, "Load and unload kernel modules"sv, kModule},
    {"@mount"sv,
     "Mount, unmount and change root, old and new mount API (mount, fsopen, open_tree, "
     "pivot_root, chroot, …)"sv,
     kMount},
    {"@namespaces"sv,
     "Enter (setns) and create (unshare) namespaces outright; clone/unshare flags are "
     "normally handled by the profile's namespace switches instead"sv,
     kNamespaces},
    {"@obsolete"sv, "Unused, obsolete or unimplemented system calls"sv, kObsolete},
    {"@privileged-fs"sv,
     "File handles and quotas: open_by_handle_at opens files by inode, bypassing the mount "
     "view (the classic container escape)"sv,
     kPrivilegedFs},
    {"@raw-io"sv, "Raw I/O port and PCI configuration access"sv, kRawIo},
    {"@reboot"sv, "Reboot, and load a new kernel with kexec"sv, kReboot},
    {"@swap"sv, "Enable and disable swap devices"sv, kSwap},
    {"@syslog"sv, "Read or clear the kernel log buffer, set the console log level"sv, kSyslog},
    {"@userfaultfd"sv,
     "Page-fault handling in user space: lets a program stall the kernel mid-copy, which "
     "turns kernel races into reliable exploits (/dev/userfaultfd is a file: keep it out "
     "of the mount view)"sv,
     kUserfaultfd},
};

// True for the names libseccomp resolves to a pseudo number: syscalls that exist on
// other architectures only. __NR_SCMP_ERROR (-1) means "unknown everywhere".
bool OnOtherArchOnly(int nr) { return nr < 0 && nr != __NR_SCMP_ERROR; }

// Syscall names are [a-z0-9_]+. Checked before libseccomp sees the name, so that
// "mount\0x" (a JSON "\u0000") cannot pass as "mount" through c_str().
bool PlausibleSyscallName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

std::span<const SyscallGroup> SyscallGroups() { return kGroups; }

const SyscallGroup* FindSyscallGroup(std::string_view name) {
  for (const SyscallGroup& g : kGroups) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

Result<std::vector<int>> ResolveSyscallEntry(std::string_view entry) {
  std::vector<int> out;
  if (entry.starts_with('@')) {
    const SyscallGroup* group = FindSyscallGroup(entry);
    if (group == nullptr) return PlainError("unknown syscall group \"" + std::string(entry) + "\"");
    for (std::string_view name : group->syscalls) {
      // seccomp_syscall_resolve_name() answers for the native architecture, which is the
      // one CompileSeccomp builds the filter for.
      const int nr = seccomp_syscall_resolve_name(std::string(name).c_str());
      if (nr == __NR_SCMP_ERROR) {
        return PlainError("syscall group \"" + std::string(entry) + "\": syscall \"" +
                          std::string(name) + "\" unknown to libseccomp");
      }
      if (!OnOtherArchOnly(nr)) out.push_back(nr);
    }
  } else {
    const int nr = PlausibleSyscallName(entry)
                       ? seccomp_syscall_resolve_name(std::string(entry).c_str())
                       : __NR_SCMP_ERROR;
    if (nr == __NR_SCMP_ERROR) return PlainError("unknown syscall \"" + std::string(entry) + "\"");
    if (!OnOtherArchOnly(nr)) out.push_back(nr);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace mp::sandbox

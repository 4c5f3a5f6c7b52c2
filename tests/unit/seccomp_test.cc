// Seccomp profiles compiled in this (parent) process and installed in a forked child under
// no_new_privs, which needs no root. Each probe runs in the child and reports {ret, errno}
// over a pipe; the parent asserts. Probes use arguments the kernel rejects harmlessly
// (missing paths, bad magic, invalid flag combinations), so a probe that slips past a broken
// filter still changes nothing, even when the tests run as root. The filtered runs use a
// distinctive deny_errno (kTestErrno) that no kernel path returns for these calls, and the
// Unfiltered* controls show that each probe's own kernel answer differs from the filter's.
#include "sandbox/seccomp.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sandbox/syscall_groups.h"
#include "seccomp_child.h"

namespace mp::sandbox {
namespace {

constexpr int kTestErrno = EHWPOISON;  // "memory page has hardware error": never a real answer
constexpr const char* kNoSuchPath = "/nonexistent-mp-seccomp-test/x";

SeccompProfile TestProfile() {
  SeccompProfile p = DefaultDenyProfile();
  p.deny_errno = kTestErrno;
  return p;
}

#define ASSERT_COMPILED(var, profile)                           \
  auto var##_result = CompileSeccomp(profile);                  \
  ASSERT_TRUE(var##_result) << var##_result.error().ToString(); \
  const SeccompProgram& var = *var##_result

// --- Probes ---------------------------------------------------------------------------------

struct NamedProbe {
  const char* name;
  Probe (*fn)();
};

// Denied by name in DefaultDenyProfile (answered with deny_errno).
const NamedProbe kDeniedByName[] = {
    {"mount", [] { return Sys(syscall(SYS_mount, "none", kNoSuchPath, "tmpfs", 0, nullptr)); }},
    {"umount2", [] { return Sys(syscall(SYS_umount2, kNoSuchPath, 0)); }},
    {"pivot_root", [] { return Sys(syscall(SYS_pivot_root, kNoSuchPath, kNoSuchPath)); }},
    {"chroot", [] { return Sys(syscall(SYS_chroot, kNoSuchPath)); }},
    {"open_tree", [] { return Sys(syscall(SYS_open_tree, AT_FDCWD, kNoSuchPath, 0)); }},
    {"fsopen", [] { return Sys(syscall(SYS_fsopen, nullptr, 0)); }},
    {"move_mount", [] { return Sys(syscall(SYS_move_mount, -1, "", -1, "", 0)); }},
    // len 0 < sizeof(Elf_Ehdr): ENOEXEC before anything is loaded.
    {"init_module", [] { return Sys(syscall(SYS_init_module, nullptr, 0, "")); }},
    {"finit_module", [] { return Sys(syscall(SYS_finit_module, -1, "", 0)); }},
    {"delete_module",
     [] { return Sys(syscall(SYS_delete_module, "mp_no_such_module", O_NONBLOCK)); }},
    // 17 > KEXEC_SEGMENT_MAX and a foreign KEXEC_ARCH: EINVAL. (nr_segments 0 would unload.)
    {"kexec_load", [] { return Sys(syscall(SYS_kexec_load, 0, 17, nullptr, 0xffff0000UL)); }},
    {"kexec_file_load", [] { return Sys(syscall(SYS_kexec_file_load, -1, -1, 0, nullptr, ~0UL)); }},
    // Bad magic: EINVAL is checked before CAP_SYS_BOOT.
    {"reboot", [] { return Sys(syscall(SYS_reboot, 0, 0, 0, nullptr)); }},
    {"swapon", [] { return Sys(syscall(SYS_swapon, kNoSuchPath, 0)); }},
    {"swapoff", [] { return Sys(syscall(SYS_swapoff, kNoSuchPath)); }},
    {"ptrace", [] { return Sys(syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0)); }},
    {"process_vm_readv",
     [] { return Sys(syscall(SYS_process_vm_readv, getpid(), nullptr, 0, nullptr, 0, 0)); }},
    {"process_vm_writev",
     [] { return Sys(syscall(SYS_process_vm_writev, getpid(), nullptr, 0, nullptr, 0, 0)); }},
    {"kcmp", [] { return Sys(syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 0, 0)); }},
    {"pidfd_getfd", [] { return Sys(syscall(SYS_pidfd_getfd, -1, 0, 0)); }},
    {"perf_event_open", [] { return Sys(syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0)); }},
    {"bpf", [] { return Sys(syscall(SYS_bpf, 0x7fffffff, nullptr, 0)); }},
    {"userfaultfd",
     [] {
       const Probe p = Sys(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
       if (p.ret >= 0) ::close(static_cast<int>(p.ret));
       return p;
     }},
    {"keyctl", [] { return Sys(syscall(SYS_keyctl, 0x7fffffff, 0, 0, 0, 0)); }},
    {"add_key", [] { return Sys(syscall(SYS_add_key, nullptr, nullptr, nullptr, 0, 0)); }},
    {"request_key", [] { return Sys(syscall(SYS_request_key, nullptr, nullptr, nullptr, 0)); }},
    {"io_uring_setup", [] { return Sys(syscall(SYS_io_uring_setup, 1, nullptr)); }},
    {"io_uring_enter", [] { return Sys(syscall(SYS_io_uring_enter, -1, 0, 0, 0, nullptr, 0)); }},
    {"open_by_handle_at", [] { return Sys(syscall(SYS_open_by_handle_at, -1, nullptr, 0)); }},
    {"name_to_handle_at",
     [] {
       return Sys(syscall(SYS_name_to_handle_at, AT_FDCWD, kNoSuchPath, nullptr, nullptr, 0));
     }},
    {"clock_settime", [] { return Sys(syscall(SYS_clock_settime, CLOCK_REALTIME, nullptr)); }},
    {"adjtimex", [] { return Sys(syscall(SYS_adjtimex, nullptr)); }},
    {"iopl", [] { return Sys(syscall(SYS_iopl, 4)); }},                  // level > 3: EINVAL
    {"ioperm", [] { return Sys(syscall(SYS_ioperm, 0x10000, 1, 0)); }},  // past the bitmap
    {"syslog", [] { return Sys(syscall(SYS_syslog, 99, nullptr, 0)); }},
    {"acct", [] { return Sys(syscall(SYS_acct, kNoSuchPath)); }},
    // Unfiltered, modify_ldt's error comes back as a positive number: the kernel casts its
    // result to unsigned int for ABI compatibility. The filter's answer is a plain -errno.
    {"modify_ldt", [] { return Sys(syscall(SYS_modify_ldt, 99, nullptr, 0)); }},
    {"uselib", [] { return Sys(syscall(SYS_uselib, kNoSuchPath)); }},
};

// unshare(bit | CLONE_PARENT): CLONE_PARENT is not an unshare flag, so the kernel answers
// EINVAL before looking at anything else; the filter answers EPERM.
Probe UnshareInvalid(unsigned long bit) { return Sys(syscall(SYS_unshare, bit | CLONE_PARENT)); }

// clone(bit | CLONE_SIGHAND) without CLONE_VM: EINVAL at the top of copy_process().
Probe CloneInvalid(unsigned long bit) {
  return Sys(syscall(SYS_clone, bit | CLONE_SIGHAND | SIGCHLD, 0, 0, 0, 0));
}

constexpr unsigned long kNewBits[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                      CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};

// The child becomes a session leader with a fresh pty as its controlling terminal: then
// TIOCSTI needs no capability (dev.tty.legacy_tiocsti=1), so the unfiltered call succeeds.
// Returns the slave fd, or -1.
int OpenControllingPty() {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) return -1;
  const char* name = ::ptsname(master);
  if (name == nullptr || ::setsid() < 0) return -1;
  const int slave = ::open(name, O_RDWR);
  if (slave < 0 || ::ioctl(slave, TIOCSCTTY, 0) != 0) return -1;
  return slave;
}

Probe TtyIoctl(unsigned long request) {
  const int fd = OpenControllingPty();
  if (fd < 0) return {-2, errno};  // setup failure, distinct from the probe's answer
  char c = '\n';
  return Sys(syscall(SYS_ioctl, fd, request, &c));
}

constexpr unsigned long kHigh = 1UL << 32;
constexpr unsigned long kTiocsti = TIOCSTI;
constexpr unsigned long kTioclinux = TIOCLINUX;

#if defined(__x86_64__)
// A 32-bit syscall from this 64-bit process: the kernel sees AUDIT_ARCH_I386 and i386 numbers.
long Int80(long nr, long a = 0, long b = 0, long c = 0) {
  long ret;
  asm volatile("int $0x80"
               : "=a"(ret)
               : "a"(nr), "b"(a), "c"(b), "d"(c)
               : "memory", "r8", "r9", "r10", "r11");
  return ret;
}
constexpr long kI386Getpid = 20;
constexpr long kI386Reboot = 88;
constexpr long kI386Unshare = 310;
constexpr long kX32Bit = 0x40000000;

// The i386 tests show the bypass is closed; a kernel without IA-32 emulation cannot show it.
constexpr const char* kNoIa32 =
    "kernel feature missing on this host: IA-32 emulation (int $0x80 getpid failed; "
    "CONFIG_IA32_EMULATION, or ia32_emulation=0 on the kernel command line)";

bool Ia32Available() {
  const Outcome o = RunInChild(nullptr, [] { return Probe{Int80(kI386Getpid), 0}; });
  return o.reported && o.probe.ret > 0;
}
#endif

// --- Tables: names and groups ---------------------------------------------------------------

TEST(SyscallGroupsTest, EveryGroupHasNameHelpAndKnownMembers) {
  std::set<std::string_view> names;
  ASSERT_FALSE(SyscallGroups().empty());
  EXPECT_EQ(SyscallGroups().front().name, "@default");
  for (const SyscallGroup& g : SyscallGroups()) {
    EXPECT_TRUE(g.name.starts_with('@')) << g.name;
    EXPECT_TRUE(names.insert(g.name).second) << "duplicate " << g.name;
    EXPECT_GE(g.help.size(), 10u) << g.name;
    EXPECT_FALSE(g.syscalls.empty()) << g.name;
    EXPECT_EQ(FindSyscallGroup(g.name), &g);
    // Resolving checks every member is known to libseccomp (on some architecture).
    auto nrs = ResolveSyscallEntry(g.name);
    ASSERT_TRUE(nrs) << nrs.error().ToString();
    EXPECT_FALSE(nrs->empty()) << g.name << " is empty on this architecture";
  }
  for (const char* required :
       {"@default", "@module", "@reboot", "@swap", "@mount", "@debug", "@bpf", "@keyring",
        "@io-uring", "@userfaultfd", "@clock", "@raw-io", "@obsolete", "@privileged-fs",
        "@namespaces", "@cpu-emulation", "@syslog", "@acct"}) {
    EXPECT_NE(FindSyscallGroup(required), nullptr) << required;
  }
}

TEST(SyscallGroupsTest, GroupsHoldTheSyscallsTheirNamesPromise) {
  auto has = [](std::string_view group, long nr) {
    auto nrs = ResolveSyscallEntry(group);
    return nrs && std::find(nrs->begin(), nrs->end(), nr) != nrs->end();
  };
  for (long nr : {SYS_mount, SYS_umount2, SYS_pivot_root, SYS_move_mount, SYS_open_tree, SYS_fsopen,
                  SYS_fsconfig, SYS_fsmount, SYS_fspick, SYS_mount_setattr, SYS_chroot}) {
    EXPECT_TRUE(has("@mount", nr)) << nr;
  }
  for (long nr : {SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_kcmp,
                  SYS_pidfd_getfd, SYS_perf_event_open, SYS_lookup_dcookie}) {
    EXPECT_TRUE(has("@debug", nr)) << nr;
  }
  EXPECT_TRUE(has("@module", SYS_finit_module));
  EXPECT_TRUE(has("@reboot", SYS_kexec_file_load));
  EXPECT_TRUE(has("@keyring", SYS_request_key));
  EXPECT_TRUE(has("@io-uring", SYS_io_uring_register));
  EXPECT_TRUE(has("@privileged-fs", SYS_open_by_handle_at));
  EXPECT_TRUE(has("@clock", SYS_settimeofday));
  EXPECT_TRUE(has("@raw-io", SYS_iopl));
  EXPECT_TRUE(has("@namespaces", SYS_setns));
  EXPECT_FALSE(has("@mount", SYS_read));
}

TEST(SyscallGroupsTest, UnknownNamesAreErrorsThatNameThem) {
  auto group = ResolveSyscallEntry("@mout");
  ASSERT_FALSE(group);
  EXPECT_NE(group.error().what.find("\"@mout\""), std::string::npos) << group.error().what;
  EXPECT_NE(group.error().what.find("group"), std::string::npos) << group.error().what;

  auto call = ResolveSyscallEntry("mout");
  ASSERT_FALSE(call);
  EXPECT_NE(call.error().what.find("\"mout\""), std::string::npos) << call.error().what;

  for (std::string_view bad :
       {std::string_view(""), std::string_view("@"), std::string_view("Mount"),
        std::string_view("mount\0x", 7), std::string_view(" mount")}) {
    EXPECT_FALSE(ResolveSyscallEntry(bad)) << bad;
  }
}

TEST(SyscallGroupsTest, SingleNamesResolveAndOtherArchOnlyNamesAreEmpty) {
  auto mount = ResolveSyscallEntry("mount");
  ASSERT_TRUE(mount) << mount.error().ToString();
  EXPECT_EQ(*mount, std::vector<int>{SYS_mount});
#if defined(__x86_64__)
  auto vm86 = ResolveSyscallEntry("vm86");  // i386 only
  ASSERT_TRUE(vm86) << vm86.error().ToString();
  EXPECT_TRUE(vm86->empty());
#endif
}

TEST(SeccompCompileTest, UnknownEntriesAreErrorsNamingListIndexAndName) {
  SeccompProfile p;
  p.deny = {"@mount", "@mout"};
  auto r = CompileSeccomp(p);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("deny[1]"), std::string::npos) << r.error().what;
  EXPECT_NE(r.error().what.find("\"@mout\""), std::string::npos) << r.error().what;

  SeccompProfile k;
  k.kill = {"no_such_syscall"};
  auto rk = CompileSeccomp(k);
  ASSERT_FALSE(rk);
  EXPECT_NE(rk.error().what.find("kill[0]"), std::string::npos) << rk.error().what;
  EXPECT_NE(rk.error().what.find("\"no_such_syscall\""), std::string::npos) << rk.error().what;
}

TEST(SeccompCompileTest, RejectsDefaultGroupAndBadErrno) {
  SeccompProfile p;
  p.deny = {"@default"};
  EXPECT_FALSE(CompileSeccomp(p));
  for (int e : {0, -1, 4096, 65536}) {
    SeccompProfile q;
    q.deny_errno = e;
    auto r = CompileSeccomp(q);
    EXPECT_FALSE(r) << e;
    if (!r) {
      EXPECT_NE(r.error().what.find("deny_errno"), std::string::npos);
    }
  }
}

TEST(SeccompCompileTest, EmptyAndDefaultProfilesCompile) {
  ASSERT_COMPILED(empty, SeccompProfile{});
  ASSERT_COMPILED(def, DefaultDenyProfile());
  EXPECT_GT(empty.instructions().size(), 0u);
  EXPECT_LE(def.instructions().size(), size_t{BPF_MAXINSNS});
  EXPECT_EQ(def.fprog()->len, def.instructions().size());
  EXPECT_EQ(def.fprog()->filter, def.instructions().data());
  EXPECT_EQ(DefaultDenyProfile().deny_errno, EPERM);
  // The default profile lists the floor itself, so it reads as the whole default.
  const SeccompProfile d = DefaultDenyProfile();
  for (std::string_view g : AlwaysDeniedGroups()) {
    EXPECT_NE(std::find(d.deny.begin(), d.deny.end(), g), d.deny.end()) << g;
  }
  // Names that exist on other architectures only are accepted (portable policies).
  SeccompProfile other;
  other.deny = {"vm86", "s390_runtime_instr"};
  EXPECT_TRUE(CompileSeccomp(other));
}

TEST(SeccompCompileTest, CompilationIsDeterministic) {
  ASSERT_COMPILED(a, DefaultDenyProfile());
  ASSERT_COMPILED(b, DefaultDenyProfile());
  ASSERT_EQ(a.instructions().size(), b.instructions().size());
  EXPECT_EQ(0, std::memcmp(a.instructions().data(), b.instructions().data(),
                           a.instructions().size_bytes()));
}

TEST(SeccompCompileTest, MoveKeepsTheProgramPointerValid) {
  auto r = CompileSeccomp(DefaultDenyProfile());
  ASSERT_TRUE(r) << r.error().ToString();
  SeccompProgram a = std::move(r).value();
  const size_t len = a.fprog()->len;
  SeccompProgram b = std::move(a);
  EXPECT_EQ(b.fprog()->len, len);
  EXPECT_EQ(b.fprog()->filter, b.instructions().data());
  EXPECT_EQ(a.fprog()->len, 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(InstallSeccompInChild(a.fprog()), EINVAL);
  EXPECT_EQ(InstallSeccompInChild(nullptr), EINVAL);
}

// --- Denied syscalls ------------------------------------------------------------------------

TEST(SeccompDenyTest, DefaultProfileDeniesEveryProbeWithTheProfileErrno) {
  ASSERT_COMPILED(prog, TestProfile());
  for (const NamedProbe& p : kDeniedByName) {
    const Outcome o = RunInChild(&prog, p.fn);
    ASSERT_TRUE(o.reported) << p.name << ": " << Describe(o);
    EXPECT_EQ(o.probe.ret, -1) << p.name << ": " << Describe(o);
    EXPECT_EQ(o.probe.err, kTestErrno) << p.name << ": " << Describe(o);
  }
}

TEST(SeccompDenyTest, DefaultErrnoIsEperm) {
  ASSERT_COMPILED(prog, DefaultDenyProfile());
  const Outcome o = RunInChild(&prog, kDeniedByName[0].fn);  // mount
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_EQ(o.probe.err, EPERM) << Describe(o);
}

// Control: without a filter the kernel itself answers every probe, never with kTestErrno,
// so a kTestErrno above can only come from the filter.
TEST(SeccompDenyTest, UnfilteredProbesReachTheKernel) {
  for (const NamedProbe& p : kDeniedByName) {
    const Outcome o = RunInChild(nullptr, p.fn);
    ASSERT_TRUE(o.reported) << p.name << ": " << Describe(o);
    EXPECT_NE(o.probe.err, kTestErrno) << p.name << ": " << Describe(o);
  }
  // A probe that succeeds outright when unfiltered, showing the filtered failure is real.
  const Outcome o = RunInChild(nullptr, [] {
    return Sys(syscall(SYS_process_vm_readv, getpid(), nullptr, 0, nullptr, 0, 0));
  });
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_EQ(o.probe.ret, 0) << Describe(o);
}

TEST(SeccompDenyTest, EmptyProfileStillDeniesTheFloor) {
  SeccompProfile p;
  p.deny_errno = kTestErrno;
  ASSERT_COMPILED(prog, p);
  for (const char* name : {"init_module", "reboot", "kexec_load", "swapon", "iopl", "clock_settime",
                           "open_by_handle_at", "bpf", "acct"}) {
    const NamedProbe* probe = nullptr;
    for (const NamedProbe& np : kDeniedByName) {
      if (std::string_view(np.name) == name) probe = &np;
    }
    ASSERT_NE(probe, nullptr) << name;
    const Outcome o = RunInChild(&prog, probe->fn);
    ASSERT_TRUE(o.reported) << name << ": " << Describe(o);
    EXPECT_EQ(o.probe.err, kTestErrno) << name << ": " << Describe(o);
  }
  // Not in the floor: reaches the kernel.
  const Outcome o = RunInChild(&prog, [] {
    return Sys(syscall(SYS_process_vm_readv, getpid(), nullptr, 0, nullptr, 0, 0));
  });
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_EQ(o.probe.ret, 0) << Describe(o);
}

TEST(SeccompDenyTest, KillListKillsAndWinsOverDeny) {
  SeccompProfile p;
  p.deny = {"mount"};
  p.kill = {"mount", "@debug"};
  ASSERT_COMPILED(prog, p);
  Outcome o = RunInChild(&prog, kDeniedByName[0].fn);  // mount
  EXPECT_EQ(o.term_signal, SIGSYS) << Describe(o);
  o = RunInChild(&prog, [] { return Sys(syscall(SYS_ptrace, 0, 0, 0, 0)); });
  EXPECT_EQ(o.term_signal, SIGSYS) << Describe(o);
  // The floor can be escalated to kill too.
  p.kill = {"reboot"};
  ASSERT_COMPILED(prog2, p);
  o = RunInChild(&prog2, [] { return Sys(syscall(SYS_reboot, 0, 0, 0, nullptr)); });
  EXPECT_EQ(o.term_signal, SIGSYS) << Describe(o);
}

// --- Namespaces -----------------------------------------------------------------------------

TEST(SeccompNamespaceTest, EveryNewNamespaceFlagIsRefusedForUnshareAndClone) {
  ASSERT_COMPILED(prog, TestProfile());
  for (unsigned long bit : kNewBits) {
    Outcome o = RunInChild(&prog, [bit] { return UnshareInvalid(bit); });
    ASSERT_TRUE(o.reported) << std::hex << bit << ": " << Describe(o);
    EXPECT_EQ(o.probe.err, EPERM) << "unshare " << std::hex << bit << ": " << Describe(o);
    o = RunInChild(&prog, [bit] { return CloneInvalid(bit); });
    ASSERT_TRUE(o.reported) << std::hex << bit << ": " << Describe(o);
    EXPECT_EQ(o.probe.err, EPERM) << "clone " << std::hex << bit << ": " << Describe(o);
    // Bits above 31 do not hide the flag (clone keeps the low 32 bits anyway).
    o = RunInChild(&prog, [bit] { return CloneInvalid(bit | kHigh); });
    EXPECT_EQ(o.probe.err, EPERM) << "clone hi " << std::hex << bit << ": " << Describe(o);
  }
  const Outcome o = RunInChild(&prog, [] { return UnshareInvalid(CLONE_NEWTIME); });
  EXPECT_EQ(o.probe.err, EPERM) << "unshare CLONE_NEWTIME: " << Describe(o);
}

TEST(SeccompNamespaceTest, UnfilteredInvalidFlagsGiveEinval) {
  for (unsigned long bit : kNewBits) {
    Outcome o = RunInChild(nullptr, [bit] { return UnshareInvalid(bit); });
    ASSERT_TRUE(o.reported) << Describe(o);
    EXPECT_EQ(o.probe.err, EINVAL) << "unshare " << std::hex << bit << ": " << Describe(o);
    o = RunInChild(nullptr, [bit] { return CloneInvalid(bit); });
    ASSERT_TRUE(o.reported) << Describe(o);
    EXPECT_EQ(o.probe.err, EINVAL) << "clone " << std::hex << bit << ": " << Describe(o);
  }
}

TEST(SeccompNamespaceTest, RealUnshareUserAndCloneNewnsAreRefused) {
  ASSERT_COMPILED(prog, TestProfile());
  Outcome o = RunInChild(&prog, [] { return Sys(::unshare(CLONE_NEWUSER)); });
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_EQ(o.probe.err, EPERM) << Describe(o);
  o = RunInChild(&prog, [] {
    const Probe p = Sys(syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0));
    if (p.ret == 0) ::_exit(0);  // only if the filter failed: a grandchild in a new mount ns
    if (p.ret > 0) ::waitpid(static_cast<pid_t>(p.ret), nullptr, 0);
    return p;
  });
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_EQ(o.probe.err, EPERM) << Describe(o);
}

// Control: unshare(CLONE_NEWUSER) needs no privilege, so unfiltered it succeeds (in this
// throw-away child) wherever user namespaces are enabled.
TEST(SeccompNamespaceTest, UnfilteredUnshareUserSucceeds) {
  const Outcome o = RunInChild(nullptr, [] { return Sys(::unshare(CLONE_NEWUSER)); });
  ASSERT_TRUE(o.reported) << Describe(o);
  // Without this control the EPERM above could be the kernel's, not the filter's.
  EXPECT_EQ(o.probe.ret, 0)
      << "kernel feature missing on this host: unprivileged user namespaces (unshare "
         "CLONE_NEWUSER: "
      << Describe(o) << "); enable them (user.max_user_namespaces > 0, and "
      << "kernel.unprivileged_userns_clone=1 where that sysctl exists)";
}

TEST(SeccompNamespaceTest, Clone3IsEnosysAndSetnsIsEperm) {
  ASSERT_COMPILED(prog, TestProfile());
  Outcome o = RunInChild(&prog, [] { return Sys(syscall(SYS_clone3, nullptr, 0)); });
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_EQ(o.probe.err, ENOSYS) << Describe(o);
  o = RunInChild(&prog, [] { return Sys(syscall(SYS_setns, -1, 0)); });
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_EQ(o.probe.err, EPERM) << Describe(o);
  // Control: the kernel's own answers differ.
  o = RunInChild(nullptr, [] { return Sys(syscall(SYS_clone3, nullptr, 0)); });
  EXPECT_EQ(o.probe.err, EINVAL) << Describe(o);
  o = RunInChild(nullptr, [] { return Sys(syscall(SYS_setns, -1, 0)); });
  EXPECT_EQ(o.probe.err, EBADF) << Describe(o);
}

TEST(SeccompNamespaceTest, DenyingClone3ByNameStillAnswersEnosys) {
  SeccompProfile p;
  p.allow_new_namespaces = true;
  p.allow_user_namespaces = true;
  p.deny = {"clone3"};
  p.deny_errno = kTestErrno;
  ASSERT_COMPILED(prog, p);
  const Outcome o = RunInChild(&prog, [] { return Sys(syscall(SYS_clone3, nullptr, 0)); });
  EXPECT_EQ(o.probe.err, ENOSYS) << Describe(o);
}

TEST(SeccompNamespaceTest, NamespacesAllowedButUserNamespacesNot) {
  SeccompProfile p = TestProfile();
  p.allow_new_namespaces = true;
  ASSERT_COMPILED(prog, p);
  Outcome o = RunInChild(&prog, [] { return UnshareInvalid(CLONE_NEWUTS); });
  EXPECT_EQ(o.probe.err, EINVAL) << "reaches the kernel: " << Describe(o);
  o = RunInChild(&prog, [] { return CloneInvalid(CLONE_NEWPID); });
  EXPECT_EQ(o.probe.err, EINVAL) << "reaches the kernel: " << Describe(o);
  o = RunInChild(&prog, [] { return UnshareInvalid(CLONE_NEWUSER); });
  EXPECT_EQ(o.probe.err, EPERM) << Describe(o);
  o = RunInChild(&prog, [] { return CloneInvalid(CLONE_NEWUSER); });
  EXPECT_EQ(o.probe.err, EPERM) << Describe(o);
  o = RunInChild(&prog, [] { return Sys(syscall(SYS_clone3, nullptr, 0)); });
  EXPECT_EQ(o.probe.err, ENOSYS) << "clone3 flags are unreadable: " << Describe(o);
  o = RunInChild(&prog, [] { return Sys(syscall(SYS_setns, -1, 0)); });
  EXPECT_EQ(o.probe.err, EBADF) << Describe(o);
}

TEST(SeccompNamespaceTest, AllNamespacesAllowed) {
  SeccompProfile p = TestProfile();
  p.allow_new_namespaces = true;
  p.allow_user_namespaces = true;
  ASSERT_COMPILED(prog, p);
  Outcome o = RunInChild(&prog, [] { return UnshareInvalid(CLONE_NEWUSER); });
  EXPECT_EQ(o.probe.err, EINVAL) << Describe(o);
  o = RunInChild(&prog, [] { return Sys(syscall(SYS_clone3, nullptr, 0)); });
  EXPECT_EQ(o.probe.err, EINVAL) << Describe(o);
}

// --- TTY injection --------------------------------------------------------------------------

TEST(SeccompTtyTest, TiocstiAndTioclinuxAreRefusedAlsoWithUpperBits) {
  ASSERT_COMPILED(prog, TestProfile());
  for (unsigned long request :
       {kTiocsti, TIOCSTI | kHigh, TIOCSTI | 0xffffffff00000000UL, kTioclinux, TIOCLINUX | kHigh}) {
    const Outcome o = RunInChild(&prog, [request] { return TtyIoctl(request); });
    ASSERT_TRUE(o.reported) << std::hex << request << ": " << Describe(o);
    ASSERT_NE(o.probe.ret, -2) << "pty setup failed: " << Describe(o);
    EXPECT_EQ(o.probe.err, EPERM) << std::hex << request << ": " << Describe(o);
  }
}

// Control: on our own controlling pty the kernel accepts TIOCSTI, and it ignores the upper
// 32 bits of the request, so TIOCSTI | 1<<32 is a real injection unless the filter
// compares 32 bits. (Returns EIO instead where dev.tty.legacy_tiocsti=0 and we lack
// CAP_SYS_ADMIN; never EPERM on the controlling tty.) TIOCLINUX on a pty is ENOTTY.
TEST(SeccompTtyTest, UnfilteredTiocstiReachesTheDriver) {
  for (unsigned long request : {kTiocsti, TIOCSTI | kHigh}) {
    const Outcome o = RunInChild(nullptr, [request] { return TtyIoctl(request); });
    ASSERT_TRUE(o.reported) << Describe(o);
    ASSERT_NE(o.probe.ret, -2) << "pty setup failed: " << Describe(o);
    EXPECT_NE(o.probe.err, EPERM) << std::hex << request << ": " << Describe(o);
    if (o.probe.err == EIO) continue;
    EXPECT_EQ(o.probe.ret, 0) << std::hex << request << ": " << Describe(o);
  }
  const Outcome o = RunInChild(nullptr, [] { return TtyIoctl(TIOCLINUX | kHigh); });
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_NE(o.probe.err, EPERM) << Describe(o);
}

TEST(SeccompTtyTest, TtyRulesCanBeTurnedOff) {
  SeccompProfile p = TestProfile();
  p.deny_tty_injection = false;
  ASSERT_COMPILED(prog, p);
  const Outcome o = RunInChild(&prog, [] { return TtyIoctl(TIOCSTI); });
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_NE(o.probe.err, EPERM) << Describe(o);
}

// --- Other ABIs -----------------------------------------------------------------------------

#if defined(__x86_64__)
TEST(SeccompArchTest, I386SyscallsKillTheProcess) {
  ASSERT_TRUE(Ia32Available()) << kNoIa32;
  ASSERT_COMPILED(prog, TestProfile());
  // Anything, even getpid.
  Outcome o = RunInChild(&prog, [] { return Probe{Int80(kI386Getpid), 0}; });
  EXPECT_EQ(o.term_signal, SIGSYS) << "i386 getpid: " << Describe(o);
  // A denied syscall (reboot with bad magic) and a namespace flag.
  o = RunInChild(&prog, [] { return Probe{Int80(kI386Reboot, 0, 0, 0), 0}; });
  EXPECT_EQ(o.term_signal, SIGSYS) << "i386 reboot: " << Describe(o);
  o = RunInChild(&prog, [] { return Probe{Int80(kI386Unshare, CLONE_NEWUSER | CLONE_PARENT), 0}; });
  EXPECT_EQ(o.term_signal, SIGSYS) << "i386 unshare: " << Describe(o);
  // Even the empty profile.
  ASSERT_COMPILED(empty, SeccompProfile{});
  o = RunInChild(&empty, [] { return Probe{Int80(kI386Getpid), 0}; });
  EXPECT_EQ(o.term_signal, SIGSYS) << "i386 getpid, empty profile: " << Describe(o);
}

// Control: unfiltered, the same i386 calls run (they are the bypass the filter closes).
TEST(SeccompArchTest, UnfilteredI386SyscallsRun) {
  ASSERT_TRUE(Ia32Available()) << kNoIa32;
  Outcome o = RunInChild(nullptr, [] { return Probe{Int80(kI386Getpid), 0}; });
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_GT(o.probe.ret, 0) << Describe(o);
  o = RunInChild(nullptr, [] {
    return Probe{Int80(kI386Unshare, CLONE_NEWUSER | CLONE_PARENT), 0};
  });
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_EQ(o.probe.ret, -EINVAL) << Describe(o);
}

TEST(SeccompArchTest, X32SyscallsKillTheProcess) {
  ASSERT_COMPILED(prog, TestProfile());
  Outcome o = RunInChild(&prog, [] { return Sys(syscall(kX32Bit | SYS_reboot, 0, 0, 0, 0)); });
  EXPECT_EQ(o.term_signal, SIGSYS) << "x32 reboot: " << Describe(o);
  o = RunInChild(
      &prog, [] { return Sys(syscall(kX32Bit | SYS_mount, "none", kNoSuchPath, "tmpfs", 0, 0)); });
  EXPECT_EQ(o.term_signal, SIGSYS) << "x32 mount: " << Describe(o);
  o = RunInChild(&prog, [] { return Sys(syscall(kX32Bit | SYS_getpid)); });
  EXPECT_EQ(o.term_signal, SIGSYS) << "x32 getpid: " << Describe(o);
  // Control: unfiltered, the kernel answers (ENOSYS without CONFIG_X86_X32_ABI, else EINVAL
  // for the bad magic); no kill.
  o = RunInChild(nullptr, [] { return Sys(syscall(kX32Bit | SYS_reboot, 0, 0, 0, 0)); });
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_TRUE(o.probe.err == ENOSYS || o.probe.err == EINVAL) << Describe(o);
}
#endif

// --- Ordinary programs keep working ---------------------------------------------------------

TEST(SeccompAllowTest, OrdinaryWorkRunsUnderTheDefaultFilter) {
  ASSERT_COMPILED(prog, DefaultDenyProfile());
  struct Case {
    const char* name;
    Probe (*fn)();
  };
  const Case cases[] = {
      {"fork+exec /bin/true",
       [] {
         const pid_t pid = ::fork();
         if (pid == 0) {
           char* const argv[] = {const_cast<char*>("true"), nullptr};
           ::execve("/bin/true", argv, environ);
           ::_exit(127);
         }
         if (pid < 0) return Sys(-1);
         int status = 0;
         if (::waitpid(pid, &status, 0) < 0) return Sys(-1);
         return Probe{WIFEXITED(status) ? WEXITSTATUS(status) : 256 + WTERMSIG(status), 0};
       }},
      {"posix_spawn /bin/true (clone3 -> clone fallback)",
       [] {
         pid_t pid = 0;
         char* const argv[] = {const_cast<char*>("true"), nullptr};
         const int rc = ::posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ);
         if (rc != 0) return Probe{-1, rc};
         int status = 0;
         if (::waitpid(pid, &status, 0) < 0) return Sys(-1);
         return Probe{WIFEXITED(status) ? WEXITSTATUS(status) : 256 + WTERMSIG(status), 0};
       }},
      {"std::thread (clone3 -> clone fallback)",
       [] {
         int value = 0;
         std::thread t([&value] { value = 42; });
         t.join();
         return Probe{value == 42 ? 0 : -1, 0};
       }},
      {"write+read a file",
       [] {
         const int fd = ::open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
         if (fd < 0) return Sys(-1);
         const char msg[] = "hello";
         char buf[sizeof msg] = {};
         const bool ok = ::write(fd, msg, sizeof msg) == sizeof msg &&
                         ::pread(fd, buf, sizeof buf, 0) == sizeof buf &&
                         std::memcmp(msg, buf, sizeof msg) == 0;
         ::close(fd);
         return Probe{ok ? 0 : -1, errno};
       }},
      {"openat /proc/self/status",
       [] {
         const int fd = ::openat(AT_FDCWD, "/proc/self/status", O_RDONLY | O_CLOEXEC);
         if (fd < 0) return Sys(-1);
         char buf[64];
         const ssize_t n = ::read(fd, buf, sizeof buf);
         ::close(fd);
         return Probe{n > 0 ? 0 : -1, errno};
       }},
      {"mmap",
       [] {
         void* p =
             ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
         if (p == MAP_FAILED) return Sys(-1);
         static_cast<char*>(p)[4096] = 1;
         return Sys(::munmap(p, 1 << 20));
       }},
      {"socketpair AF_UNIX",
       [] {
         int sv[2];
         if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return Sys(-1);
         char c = 'x';
         const bool ok = ::send(sv[0], &c, 1, 0) == 1 && ::recv(sv[1], &c, 1, 0) == 1;
         ::close(sv[0]);
         ::close(sv[1]);
         return Probe{ok ? 0 : -1, errno};
       }},
      {"socket AF_UNIX",
       [] {
         const Probe p = Sys(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
         if (p.ret >= 0) ::close(static_cast<int>(p.ret));
         return Probe{p.ret >= 0 ? 0 : -1, p.err};
       }},
      {"ioctl TIOCGWINSZ",
       [] {
         const int fd = OpenControllingPty();
         if (fd < 0) return Sys(-1);
         winsize ws{};
         return Sys(::ioctl(fd, TIOCGWINSZ, &ws));
       }},
      {"ioctl FIONREAD with upper bits",  // the masked rule matches TIOCSTI only
       [] {
         int sv[2];
         if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return Sys(-1);
         int n = -1;
         return Sys(syscall(SYS_ioctl, sv[0], FIONREAD | kHigh, &n));
       }},
      {"unshare without CLONE_NEW* flags", [] { return Sys(::unshare(CLONE_FILES)); }},
      {"fork (clone without CLONE_NEW* flags)",
       [] {
         const pid_t pid = ::fork();
         if (pid == 0) ::_exit(7);
         if (pid < 0) return Sys(-1);
         int status = 0;
         ::waitpid(pid, &status, 0);
         return Probe{WIFEXITED(status) && WEXITSTATUS(status) == 7 ? 0 : -1, 0};
       }},
      {"prctl PR_GET_NO_NEW_PRIVS",
       [] {
         return Probe{::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? 0 : -1, 0};
       }},
  };
  for (const Case& c : cases) {
    const Outcome o = RunInChild(&prog, c.fn);
    ASSERT_TRUE(o.reported) << c.name << ": " << Describe(o);
    EXPECT_EQ(o.probe.ret, 0) << c.name << ": " << Describe(o);
  }
}

}  // namespace
}  // namespace mp::sandbox

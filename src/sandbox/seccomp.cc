#include "sandbox/seccomp.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <utility>

#include "common/unique_fd.h"
#include "sandbox/syscall_groups.h"

namespace mp::sandbox {
namespace {

// The one ABI the filter admits. libseccomp's context starts with the native arch only, and
// every other arch takes the bad-arch action (kill). On x86-64 that covers both escape
// hatches of the classic deny-list bypass: i386 syscalls (int $0x80 from a 64-bit process
// reports AUDIT_ARCH_I386) and x32 syscalls (AUDIT_ARCH_X86_64 with nr | 0x40000000):
// libseccomp's x86-64 filter sends nr >= 0x40000000 to the bad-arch action when x32 is
// not in the filter.
#if defined(__x86_64__)
constexpr uint32_t kArch = SCMP_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kArch = SCMP_ARCH_AARCH64;  // AArch32 compat syscalls are killed
#else
#error "seccomp.cc: check the clone flag argument and compat ABIs for this architecture"
#endif

// clone(flags, stack, ptid, ctid, tls) on x86-64 and arm64; CLONE_BACKWARDS variants only
// swap the later arguments (s390's CLONE_BACKWARDS2 would need 1, hence the #error above).
constexpr unsigned kCloneFlagsArg = 0;

// Every CLONE_NEW* bit clone() understands. CLONE_NEWTIME (0x80) lies inside CSIGNAL for
// clone(), which the kernel reads as the exit signal: only unshare and clone3 take it.
constexpr uint64_t kCloneNewBits[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                      CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};
constexpr uint64_t kUnshareNewBits[] = {CLONE_NEWNS,  CLONE_NEWCGROUP, CLONE_NEWUTS,
                                        CLONE_NEWIPC, CLONE_NEWUSER,   CLONE_NEWPID,
                                        CLONE_NEWNET, CLONE_NEWTIME};

constexpr std::string_view kAlwaysDenied[] = {"@module",   "@reboot",        "@swap",
                                              "@raw-io",   "@clock",         "@acct",
                                              "@obsolete", "@privileged-fs", "@bpf"};

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

std::string SyscallName(int nr) {
  char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
  std::string out = name != nullptr ? name : "syscall " + std::to_string(nr);
  free(name);  // NOLINT: libseccomp hands out malloc'd memory
  return out;
}

// libseccomp returns -errno.
Error ScmpError(int rc, const std::string& what) { return ErrnoError(-rc, what); }

Result<void> AddRule(const Ctx& ctx, uint32_t action, int nr, unsigned n_args = 0,
                     const scmp_arg_cmp* args = nullptr) {
  // _exact: fail rather than let libseccomp rewrite the rule (socketcall multiplexing etc.).
  const int rc = seccomp_rule_add_exact_array(ctx.get(), action, nr, n_args, args);
  if (rc < 0) return ScmpError(rc, "seccomp_rule_add_exact(" + SyscallName(nr) + ")");
  return Ok();
}

// One rule per bit: rules for the same syscall are OR'ed, so "any bit set" needs a masked
// compare per bit ((arg & bit) == bit).
Result<void> AddFlagRules(const Ctx& ctx, uint32_t action, int nr, unsigned arg,
                          std::span<const uint64_t> bits) {
  for (uint64_t bit : bits) {
    const scmp_arg_cmp cmp = {arg, SCMP_CMP_MASKED_EQ, bit, bit};
    MP_RETURN_IF_ERROR(AddRule(ctx, action, nr, 1, &cmp));
  }
  return Ok();
}

// Collects names into nr -> action. Later calls override earlier ones (kill over deny).
Result<void> Collect(std::span<const std::string> names, std::string_view list, uint32_t action,
                     std::map<int, uint32_t>& actions) {
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string where =
        "seccomp profile " + std::string(list) + "[" + std::to_string(i) + "]";
    if (names[i] == "@default") {
      return PlainError(where + ": \"@default\" is what every program needs; it cannot be denied");
    }
    auto nrs = ResolveSyscallEntry(names[i]);
    if (!nrs) return std::move(nrs).error().Wrap(where);
    for (int nr : *nrs) actions[nr] = action;
  }
  return Ok();
}

Result<std::vector<sock_filter>> ExportBpf(const Ctx& ctx) {
  // seccomp_export_bpf() writes to an fd (libseccomp 2.5 has no in-memory export); a memfd
  // keeps the program off any file system.
  UniqueFd fd(::memfd_create("mp-seccomp-bpf", MFD_CLOEXEC));
  if (!fd) return ErrnoError("memfd_create(\"mp-seccomp-bpf\")");
  const int rc = seccomp_export_bpf(ctx.get(), fd.get());
  if (rc < 0) return ScmpError(rc, "seccomp_export_bpf");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("fstat(memfd \"mp-seccomp-bpf\")");
  const auto bytes = static_cast<size_t>(st.st_size);
  if (bytes == 0 || bytes % sizeof(sock_filter) != 0 ||
      bytes / sizeof(sock_filter) > BPF_MAXINSNS) {
    return PlainError("seccomp_export_bpf: unusable program of " + std::to_string(bytes) +
                      " bytes (" + std::to_string(BPF_MAXINSNS) + " instructions at most)");
  }
  std::vector<sock_filter> insns(bytes / sizeof(sock_filter));
  auto* dst = reinterpret_cast<char*>(insns.data());
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(fd.get(), dst + done, bytes - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("pread(memfd \"mp-seccomp-bpf\")");
    if (n == 0) return PlainError("pread(memfd \"mp-seccomp-bpf\"): short program");
    done += static_cast<size_t>(n);
  }
  return insns;
}

}  // namespace

std::span<const std::string_view> AlwaysDeniedGroups() { return kAlwaysDenied; }

SeccompProfile DefaultDenyProfile() {
  SeccompProfile p;
  p.deny.assign(kAlwaysDenied, kAlwaysDenied + std::size(kAlwaysDenied));
  for (const char* g :
       {"@mount", "@debug", "@keyring", "@io-uring", "@userfaultfd", "@cpu-emulation", "@syslog"}) {
    p.deny.emplace_back(g);
  }
  return p;
}

SeccompProgram::SeccompProgram(std::vector<sock_filter> insns) : insns_(std::move(insns)) {
  fprog_.len = static_cast<unsigned short>(insns_.size());
  fprog_.filter = insns_.data();
}

SeccompProgram::SeccompProgram(SeccompProgram&& other) noexcept
    : insns_(std::move(other.insns_)), fprog_(std::exchange(other.fprog_, sock_fprog{})) {
  fprog_.filter = insns_.data();
}

SeccompProgram& SeccompProgram::operator=(SeccompProgram&& other) noexcept {
  if (this != &other) {
    insns_ = std::move(other.insns_);
    fprog_ = std::exchange(other.fprog_, sock_fprog{});
    fprog_.filter = insns_.data();
  }
  return *this;
}

Result<SeccompProgram> CompileSeccomp(const SeccompProfile& profile) {
  // SECCOMP_RET_DATA holds 16 bits, but the kernel hands it back as -errno, and only
  // 1..4095 reads as an error to libc (MAX_ERRNO).
  if (profile.deny_errno < 1 || profile.deny_errno > 4095) {
    return PlainError("seccomp profile deny_errno " + std::to_string(profile.deny_errno) +
                      ": must be 1..4095");
  }
  const uint32_t deny = SCMP_ACT_ERRNO(static_cast<uint16_t>(profile.deny_errno));
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  const uint32_t enosys = SCMP_ACT_ERRNO(ENOSYS);

  // Name rules first, as one nr -> action map: libseccomp keeps the first of two conflicting
  // unconditional rules silently, so conflicts are settled here (kill > deny).
  std::map<int, uint32_t> actions;
  for (std::string_view group : kAlwaysDenied) {
    auto nrs = ResolveSyscallEntry(group);
    if (!nrs) return std::move(nrs).error().Wrap("seccomp built-in deny set");
    for (int nr : *nrs) actions[nr] = deny;
  }
  MP_RETURN_IF_ERROR(Collect(profile.deny, "deny", deny, actions));
  MP_RETURN_IF_ERROR(Collect(profile.kill, "kill", SCMP_ACT_KILL_PROCESS, actions));
  // glibc (2.34+) falls back from clone3 to clone only on ENOSYS; any other errno would
  // break pthread_create and posix_spawn.
  if (auto it = actions.find(SCMP_SYS(clone3)); it != actions.end() && it->second == deny) {
    it->second = enosys;
  }

  Ctx ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return PlainError("seccomp_init(SCMP_ACT_ALLOW) failed");
  if (seccomp_arch_native() != kArch || seccomp_arch_exist(ctx.get(), kArch) != 0) {
    return PlainError("seccomp: libseccomp's native architecture is not the one built for");
  }
  struct Attr {
    scmp_filter_attr attr;
    uint32_t value;
    const char* name;
  };
  const Attr attrs[] = {
      // Any ABI but the native one (see kArch) kills the process, not just the thread.
      {SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS, "ACT_BADARCH"},
      // The child sets no_new_privs itself, before InstallSeccompInChild (seccomp.h); the
      // exported BPF would not carry this bit anyway, only seccomp_load() acts on it.
      {SCMP_FLTATR_CTL_NNP, 0, "CTL_NNP"},
      // Binary search over syscall numbers: an allowed call walks ~log2(n) jumps, not the
      // whole deny list.
      {SCMP_FLTATR_CTL_OPTIMIZE, 2, "CTL_OPTIMIZE"},
  };
  for (const Attr& a : attrs) {
    const int rc = seccomp_attr_set(ctx.get(), a.attr, a.value);
    if (rc < 0) return ScmpError(rc, std::string("seccomp_attr_set(") + a.name + ")");
  }

  for (const auto& [nr, action] : actions) MP_RETURN_IF_ERROR(AddRule(ctx, action, nr));

  // Argument rules. A syscall already denied or killed by name needs none (and libseccomp
  // would merge them unpredictably).
  auto by_name = [&](int nr) { return actions.count(nr) != 0; };
  if (!profile.allow_new_namespaces || !profile.allow_user_namespaces) {
    const uint64_t user_only[] = {CLONE_NEWUSER};
    const std::span<const uint64_t> clone_bits =
        profile.allow_new_namespaces ? std::span<const uint64_t>(user_only) : kCloneNewBits;
    const std::span<const uint64_t> unshare_bits =
        profile.allow_new_namespaces ? std::span<const uint64_t>(user_only) : kUnshareNewBits;
    // clone's flags are unsigned long, but the kernel keeps only the low 32 bits
    // (lower_32_bits(clone_flags)); a single-bit masked compare ignores the rest either way.
    if (!by_name(SCMP_SYS(clone))) {
      MP_RETURN_IF_ERROR(AddFlagRules(ctx, eperm, SCMP_SYS(clone), kCloneFlagsArg, clone_bits));
    }
    if (!by_name(SCMP_SYS(unshare))) {
      MP_RETURN_IF_ERROR(AddFlagRules(ctx, eperm, SCMP_SYS(unshare), 0, unshare_bits));
    }
    // clone3 passes its flags in a struct in user memory, out of BPF's reach: refuse the
    // whole call with ENOSYS so that glibc retries with clone, whose flags are checked.
    if (!by_name(SCMP_SYS(clone3))) MP_RETURN_IF_ERROR(AddRule(ctx, enosys, SCMP_SYS(clone3)));
    if (!profile.allow_new_namespaces && !by_name(SCMP_SYS(setns))) {
      MP_RETURN_IF_ERROR(AddRule(ctx, eperm, SCMP_SYS(setns)));
    }
  }
  if (profile.deny_tty_injection && !by_name(SCMP_SYS(ioctl))) {
    // ioctl's request is `unsigned int cmd` in the kernel: the upper 32 bits of the register
    // are ignored there, so TIOCSTI | (1ULL << 32) is still TIOCSTI. Compare the low 32 bits
    // only; an SCMP_CMP_EQ on 64 bits would let that variant through.
    for (uint64_t request : {uint64_t{TIOCSTI}, uint64_t{TIOCLINUX}}) {
      const scmp_arg_cmp cmp = {1, SCMP_CMP_MASKED_EQ, 0xffffffffULL, request};
      MP_RETURN_IF_ERROR(AddRule(ctx, eperm, SCMP_SYS(ioctl), 1, &cmp));
    }
  }

  if (profile.restrict_socket_families) {
    // Only AF_UNIX (1), AF_INET (2), AF_INET6 (10) and AF_NETLINK (16). Any other family
    // would autoload its module (net-pf-N) or reach what the network namespace does not
    // isolate (AF_VSOCK on 6.1) or kernel surface like AF_ALG. The family is an int, but a
    // 64-bit compare fails closed: upper bits set make the value look out of range.
    const uint32_t eafnosupport = SCMP_ACT_ERRNO(EAFNOSUPPORT);
    for (int nr : {SCMP_SYS(socket), SCMP_SYS(socketpair)}) {
      if (by_name(nr)) continue;
      // libseccomp takes one comparison per argument and rule: ranges become masked
      // equalities. Refused: 0, 3, 4-7, 8-9, 11, 12-15, and everything above 16.
      const scmp_arg_cmp refused[] = {
          {0, SCMP_CMP_EQ, 0, 0},
          {0, SCMP_CMP_EQ, 3, 0},
          {0, SCMP_CMP_MASKED_EQ, ~uint64_t{3}, 4},
          {0, SCMP_CMP_MASKED_EQ, ~uint64_t{1}, 8},
          {0, SCMP_CMP_EQ, 11, 0},
          {0, SCMP_CMP_MASKED_EQ, ~uint64_t{3}, 12},
      };
      for (const scmp_arg_cmp& cmp : refused) {
        MP_RETURN_IF_ERROR(AddRule(ctx, eafnosupport, nr, 1, &cmp));
      }
      const scmp_arg_cmp high = {0, SCMP_CMP_GT, 16, 0};
      MP_RETURN_IF_ERROR(AddRule(ctx, eafnosupport, nr, 1, &high));
    }
  }

  MP_TRY(std::vector<sock_filter> insns, ExportBpf(ctx));
  return SeccompProgram(std::move(insns));
}

}  // namespace mp::sandbox

#include "sandbox/seccomp.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <memory>
#include <utility>
#include <vector>

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
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
constexpr uint32_t kX32Bit = 0x40000000;  // __X32_SYSCALL_BIT
#elif defined(__aarch64__)
constexpr uint32_t kArch = SCMP_ARCH_AARCH64;  // AArch32 compat syscalls are killed
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
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

// Past the highest syscall number of any architecture libseccomp supports natively here.
constexpr int kSyscallScanLimit = 2048;

// The protocols socket() takes per family under restrict_socket_protocols, ascending.
struct FamilyProtocols {
  int family;
  std::initializer_list<uint64_t> allowed;
};
const FamilyProtocols kSocketProtocols[] = {
    {AF_INET, {0, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP}},
    {AF_INET6, {0, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6}},
    {AF_NETLINK, {NETLINK_ROUTE}},
};

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

// [lo, hi] as aligned power-of-two blocks, each a masked equality (value & mask) == base, as a
// CIDR split does: libseccomp takes one comparison per argument in a rule, so a range needs
// one rule per block. The masks cover all 64 bits: a value with any upper bit set matches no
// block (the caller refuses those with a greater-than rule).
std::vector<std::pair<uint64_t, uint64_t>> RangeBlocks(uint64_t lo, uint64_t hi) {
  std::vector<std::pair<uint64_t, uint64_t>> blocks;
  while (lo <= hi) {
    uint64_t size = lo == 0 ? uint64_t{1} << 32 : lo & (~lo + 1);  // lo's alignment
    while (lo + size - 1 > hi) size >>= 1;
    blocks.emplace_back(~(size - 1), lo);
    lo += size;
  }
  return blocks;
}

// For `nr` (socket or socketpair), per family of kSocketProtocols: every protocol outside its
// list fails with EPROTONOSUPPORT. Rules are (family == F && protocol in block), one per block
// of each gap between allowed values, plus (family == F && protocol > the largest allowed).
Result<void> AddSocketProtocolRules(const Ctx& ctx, int nr) {
  const uint32_t refuse = SCMP_ACT_ERRNO(EPROTONOSUPPORT);
  for (const FamilyProtocols& f : kSocketProtocols) {
    const scmp_arg_cmp family = {0, SCMP_CMP_EQ, static_cast<uint64_t>(f.family), 0};
    uint64_t next = 0;  // the lowest protocol not yet covered
    for (uint64_t allowed : f.allowed) {
      if (allowed > next) {
        for (const auto& [mask, base] : RangeBlocks(next, allowed - 1)) {
          const scmp_arg_cmp cmps[] = {family, {2, SCMP_CMP_MASKED_EQ, mask, base}};
          MP_RETURN_IF_ERROR(AddRule(ctx, refuse, nr, 2, cmps));
        }
      }
      next = allowed + 1;
    }
    const scmp_arg_cmp cmps[] = {family, {2, SCMP_CMP_GT, next - 1, 0}};
    MP_RETURN_IF_ERROR(AddRule(ctx, refuse, nr, 2, cmps));
  }
  return Ok();
}

// Instructions put before libseccomp's program: a syscall number above `newest` of the
// native ABI returns ENOSYS; everything else falls through to libseccomp's program, which
// starts over from the arch check (its jumps are relative and stay within it, so a prefix
// leaves them intact). A foreign ABI, and x32 numbers on x86-64, go through untouched: the
// program kills them.
std::vector<sock_filter> UnknownSyscallPrefix(int newest) {
  constexpr uint32_t kArchOffset = offsetof(seccomp_data, arch);
  constexpr uint32_t kNrOffset = offsetof(seccomp_data, nr);
#if defined(__x86_64__)
  return {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kArchOffset),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 0, 4),  // foreign ABI: to the program
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNrOffset),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, kX32Bit, 2, 0),  // x32: to the program
      BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, static_cast<uint32_t>(newest), 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
  };
#else
  return {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kArchOffset),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNrOffset),
      BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, static_cast<uint32_t>(newest), 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
  };
#endif
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

int NewestKnownSyscall() {
  static const int newest = [] {
    int found = -1;
    for (int nr = 0; nr < kSyscallScanLimit; ++nr) {
      char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
      if (name != nullptr) found = nr;
      free(name);  // NOLINT: libseccomp hands out malloc'd memory
    }
    return found;
  }();
  return newest;
}

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
  std::vector<uint64_t> ioctls;
  if (profile.deny_tty_injection) ioctls.insert(ioctls.end(), {TIOCSTI, TIOCLINUX});
  if (profile.deny_line_disciplines) ioctls.push_back(TIOCSETD);
  if (!by_name(SCMP_SYS(ioctl))) {
    // ioctl's request is `unsigned int cmd` in the kernel: the upper 32 bits of the register
    // are ignored there, so TIOCSTI | (1ULL << 32) is still TIOCSTI. Compare the low 32 bits
    // only; an SCMP_CMP_EQ on 64 bits would let that variant through.
    for (uint64_t request : ioctls) {
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
      if (profile.restrict_socket_protocols) MP_RETURN_IF_ERROR(AddSocketProtocolRules(ctx, nr));
    }
  }

  MP_TRY(std::vector<sock_filter> insns, ExportBpf(ctx));
  if (profile.unknown_syscalls_enosys) {
    const int newest = NewestKnownSyscall();
    if (newest < 0) return PlainError("seccomp: libseccomp names no native syscall");
    std::vector<sock_filter> prefix = UnknownSyscallPrefix(newest);
    if (prefix.size() + insns.size() > BPF_MAXINSNS) {
      return PlainError("seccomp: program of " + std::to_string(prefix.size() + insns.size()) +
                        " instructions is over " + std::to_string(BPF_MAXINSNS));
    }
    insns.insert(insns.begin(), prefix.begin(), prefix.end());
  }
  return SeccompProgram(std::move(insns));
}

}  // namespace mp::sandbox

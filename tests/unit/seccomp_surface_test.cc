// The filter's rules against kernel surface (issue 13): TIOCSETD, socket protocols per family,
// and syscalls newer than libseccomp. Probes run in a forked child (seccomp_child.h) and use
// only arguments that cannot make this machine's kernel load a module even without the filter:
// N_TTY (always registered), raw sockets (their wildcard entry matches any protocol), protocol
// numbers the kernel rejects before any lookup, NETLINK_USERSOCK (built in). The VM attack
// test (tests/attack/kernel_surface_test.cc) shows the module loads themselves. The rule for
// unknown syscalls is checked by running the exported BPF in a small interpreter, so that it
// does not depend on which syscalls this kernel has.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "seccomp_child.h"

namespace mp::sandbox {
namespace {

#define ASSERT_COMPILED(var, profile)                           \
  auto var##_result = CompileSeccomp(profile);                  \
  ASSERT_TRUE(var##_result) << var##_result.error().ToString(); \
  const SeccompProgram& var = *var##_result

constexpr unsigned long kHigh = 1UL << 32;

// TIOCSETD(N_TTY) on a fresh pty: a no-op the kernel accepts; -2 when the pty failed.
Probe SetLineDiscipline(unsigned long request) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) return {-2, errno};
  const char* name = ::ptsname(master);
  const int slave = name != nullptr ? ::open(name, O_RDWR | O_NOCTTY) : -1;
  if (slave < 0) return {-2, errno};
  int ldisc = 0;  // N_TTY
  return Sys(syscall(SYS_ioctl, slave, request, &ldisc));
}

TEST(SeccompSurfaceTest, TiocsetdIsRefusedAlsoWithUpperBits) {
  ASSERT_COMPILED(prog, DefaultDenyProfile());
  for (unsigned long request : {static_cast<unsigned long>(TIOCSETD), TIOCSETD | kHigh}) {
    const Outcome o = RunInChild(&prog, [request] { return SetLineDiscipline(request); });
    ASSERT_TRUE(o.reported) << Describe(o);
    ASSERT_NE(o.probe.ret, -2) << "pty setup failed: " << Describe(o);
    EXPECT_EQ(o.probe.err, EPERM) << std::hex << request << ": " << Describe(o);
  }
}

// Control: without the rule the kernel takes the same call.
TEST(SeccompSurfaceTest, ControlTiocsetdReachesTheKernelWithoutTheRule) {
  SeccompProfile p = DefaultDenyProfile();
  p.deny_line_disciplines = false;
  ASSERT_COMPILED(prog, p);
  for (const SeccompProgram* program : {&prog, static_cast<const SeccompProgram*>(nullptr)}) {
    const Outcome o = RunInChild(program, [] { return SetLineDiscipline(TIOCSETD | kHigh); });
    ASSERT_TRUE(o.reported) << Describe(o);
    EXPECT_EQ(o.probe.ret, 0) << Describe(o);
  }
}

struct SocketCall {
  const char* what;
  int nr;  // SYS_socket or SYS_socketpair
  unsigned long family, type, protocol;
};

Probe MakeSocket(const SocketCall& c) {
  int sv[2] = {-1, -1};
  const long rc = c.nr == SYS_socket ? syscall(SYS_socket, c.family, c.type, c.protocol)
                                     : syscall(SYS_socketpair, c.family, c.type, c.protocol, sv);
  const Probe p = Sys(rc);
  if (c.nr == SYS_socket && rc >= 0) ::close(static_cast<int>(rc));
  if (c.nr == SYS_socketpair && rc == 0) {
    ::close(sv[0]);
    ::close(sv[1]);
  }
  return p;
}

// Refused by the protocol rules, each with what the kernel says without the filter (never
// EPROTONOSUPPORT, and never after a module lookup). Raw sockets need CAP_NET_RAW: EPERM
// when the tests do not run as root.
const SocketCall kRefusedProtocols[] = {
    {"raw SCTP", SYS_socket, AF_INET, SOCK_RAW, IPPROTO_SCTP},
    {"raw6 DCCP", SYS_socket, AF_INET6, SOCK_RAW, IPPROTO_DCCP},
    {"raw L2TP", SYS_socket, AF_INET, SOCK_RAW, 115 /* IPPROTO_L2TP */},
    {"raw6 UDP-Lite", SYS_socket, AF_INET6, SOCK_RAW, IPPROTO_UDPLITE},
    {"raw ICMPv6 on inet", SYS_socket, AF_INET, SOCK_RAW, IPPROTO_ICMPV6},
    {"raw6 ICMP on inet6", SYS_socket, AF_INET6, SOCK_RAW, IPPROTO_ICMP},
    {"beyond IPPROTO_MAX", SYS_socket, AF_INET, SOCK_DGRAM, 1000},
    {"inet6 beyond IPPROTO_MAX", SYS_socket, AF_INET6, SOCK_STREAM, 100000},
    {"netlink usersock", SYS_socket, AF_NETLINK, SOCK_RAW, NETLINK_USERSOCK},
    {"socketpair raw SCTP", SYS_socketpair, AF_INET, SOCK_RAW, IPPROTO_SCTP},
};

TEST(SeccompSurfaceTest, ProtocolsOutsideEachFamilysListAreRefused) {
  ASSERT_COMPILED(prog, DefaultDenyProfile());
  for (const SocketCall& c : kRefusedProtocols) {
    const Outcome o = RunInChild(&prog, [&c] { return MakeSocket(c); });
    ASSERT_TRUE(o.reported) << c.what << ": " << Describe(o);
    EXPECT_EQ(o.probe.ret, -1) << c.what;
    EXPECT_EQ(o.probe.err, EPROTONOSUPPORT) << c.what << ": " << Describe(o);
  }
  // Upper bits make the value out of range: refused, although the kernel would read TCP.
  const SocketCall high = {"TCP | 1<<32", SYS_socket, AF_INET, SOCK_STREAM, IPPROTO_TCP | kHigh};
  const Outcome o = RunInChild(&prog, [&high] { return MakeSocket(high); });
  EXPECT_EQ(o.probe.err, EPROTONOSUPPORT) << Describe(o);
}

// Control: the same calls reach the kernel without the protocol rules (the family rules stay).
TEST(SeccompSurfaceTest, ControlTheSameCallsReachTheKernelWithoutTheRules) {
  SeccompProfile p = DefaultDenyProfile();
  p.restrict_socket_protocols = false;
  ASSERT_COMPILED(prog, p);
  for (const SocketCall& c : kRefusedProtocols) {
    const Outcome o = RunInChild(&prog, [&c] { return MakeSocket(c); });
    ASSERT_TRUE(o.reported) << c.what << ": " << Describe(o);
    EXPECT_NE(o.probe.err, EPROTONOSUPPORT) << c.what << ": " << Describe(o);
  }
}

TEST(SeccompSurfaceTest, WhatProgramsNeedIsAllowed) {
  ASSERT_COMPILED(prog, DefaultDenyProfile());
  const SocketCall allowed[] = {
      {"tcp", SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0},
      {"tcp explicit", SYS_socket, AF_INET, SOCK_STREAM, IPPROTO_TCP},
      {"udp", SYS_socket, AF_INET, SOCK_DGRAM, IPPROTO_UDP},
      {"tcp6", SYS_socket, AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, IPPROTO_TCP},
      {"udp6", SYS_socket, AF_INET6, SOCK_DGRAM, 0},
      {"netlink route", SYS_socket, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE},
      {"unix", SYS_socket, AF_UNIX, SOCK_STREAM, 0},
      {"unix pair", SYS_socketpair, AF_UNIX, SOCK_SEQPACKET, 0},
  };
  for (const SocketCall& c : allowed) {
    const Outcome o = RunInChild(&prog, [&c] { return MakeSocket(c); });
    ASSERT_TRUE(o.reported) << c.what << ": " << Describe(o);
    EXPECT_EQ(o.probe.err, 0) << c.what << ": " << Describe(o);
  }
  // Ping sockets: the kernel may refuse them by net.ipv4.ping_group_range (EACCES), the
  // filter does not.
  for (const SocketCall& c :
       {SocketCall{"ping", SYS_socket, AF_INET, SOCK_DGRAM, IPPROTO_ICMP},
        SocketCall{"ping6", SYS_socket, AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6}}) {
    const Outcome o = RunInChild(&prog, [&c] { return MakeSocket(c); });
    ASSERT_TRUE(o.reported) << c.what << ": " << Describe(o);
    EXPECT_NE(o.probe.err, EPROTONOSUPPORT) << c.what << ": " << Describe(o);
  }
}

// --- Syscalls newer than libseccomp -----------------------------------------------------------

// A classic BPF interpreter for seccomp programs: the kernel's semantics for the instructions
// libseccomp and our prefix emit (loads from seccomp_data, scratch memory, ALU, jumps, RET).
uint32_t RunBpf(std::span<const sock_filter> prog, const seccomp_data& data) {
  uint32_t a = 0;
  uint32_t x = 0;
  uint32_t mem[BPF_MEMWORDS] = {};
  for (size_t pc = 0; pc < prog.size(); ++pc) {
    const sock_filter& i = prog[pc];
    const uint32_t src = BPF_SRC(i.code) == BPF_X ? x : i.k;
    switch (BPF_CLASS(i.code)) {
      case BPF_LD:
        if (BPF_MODE(i.code) == BPF_ABS) {
          std::memcpy(&a, reinterpret_cast<const char*>(&data) + i.k, 4);
        } else if (BPF_MODE(i.code) == BPF_MEM) {
          a = mem[i.k];
        } else {
          a = i.k;
        }
        break;
      case BPF_LDX:
        x = BPF_MODE(i.code) == BPF_MEM ? mem[i.k] : i.k;
        break;
      case BPF_ST:
        mem[i.k] = a;
        break;
      case BPF_STX:
        mem[i.k] = x;
        break;
      case BPF_ALU:
        switch (BPF_OP(i.code)) {
          case BPF_AND:
            a &= src;
            break;
          case BPF_OR:
            a |= src;
            break;
          case BPF_ADD:
            a += src;
            break;
          case BPF_SUB:
            a -= src;
            break;
          default:
            ADD_FAILURE() << "unexpected ALU op " << i.code;
            return 0;
        }
        break;
      case BPF_JMP: {
        bool taken = false;
        switch (BPF_OP(i.code)) {
          case BPF_JA:
            pc += i.k;
            continue;
          case BPF_JEQ:
            taken = a == src;
            break;
          case BPF_JGT:
            taken = a > src;
            break;
          case BPF_JGE:
            taken = a >= src;
            break;
          case BPF_JSET:
            taken = (a & src) != 0;
            break;
        }
        pc += taken ? i.jt : i.jf;
        break;
      }
      case BPF_RET:
        return BPF_RVAL(i.code) == BPF_A ? a : i.k;
      case BPF_MISC:
        if (BPF_MISCOP(i.code) == BPF_TAX) {
          x = a;
        } else {
          a = x;
        }
        break;
    }
  }
  ADD_FAILURE() << "the program ran off its end";
  return 0;
}

#if defined(__x86_64__)
constexpr uint32_t kNativeArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kNativeArch = AUDIT_ARCH_AARCH64;
#endif

uint32_t Verdict(const SeccompProgram& prog, int nr, uint32_t arch = kNativeArch) {
  seccomp_data d{};
  d.nr = nr;
  d.arch = arch;
  return RunBpf(prog.instructions(), d);
}

TEST(SeccompSurfaceTest, SyscallsNewerThanLibseccompAnswerEnosys) {
  const int newest = NewestKnownSyscall();
  ASSERT_GE(newest, SYS_getpid);
  ASSERT_COMPILED(prog, DefaultDenyProfile());
  constexpr uint32_t kEnosys = SECCOMP_RET_ERRNO | ENOSYS;
  EXPECT_EQ(Verdict(prog, newest + 1), kEnosys);
  EXPECT_EQ(Verdict(prog, 1023), kEnosys);
  EXPECT_EQ(Verdict(prog, SYS_getpid), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Verdict(prog, newest), SECCOMP_RET_ALLOW) << "the newest known syscall, " << newest;
  EXPECT_EQ(Verdict(prog, SYS_mount), SECCOMP_RET_ERRNO | EPERM);
  // A foreign ABI still meets libseccomp's bad-arch action.
  EXPECT_EQ(Verdict(prog, SYS_getpid, AUDIT_ARCH_I386), SECCOMP_RET_KILL_PROCESS);
#if defined(__x86_64__)
  EXPECT_EQ(Verdict(prog, 0x40000000 | SYS_getpid), SECCOMP_RET_KILL_PROCESS) << "x32";
#endif
  // And the kernel agrees for a real call in a child.
  const Outcome o = RunInChild(&prog, [newest] { return Sys(syscall(newest + 1, -1, 0, 0, 0)); });
  ASSERT_TRUE(o.reported) << Describe(o);
  EXPECT_EQ(o.probe.err, ENOSYS) << Describe(o);
  const Outcome pid = RunInChild(&prog, [] { return Sys(syscall(SYS_getpid)); });
  EXPECT_GT(pid.probe.ret, 0) << Describe(pid);
}

// Control: without the rule a number libseccomp does not know falls to the default action.
TEST(SeccompSurfaceTest, ControlWithoutTheRuleUnknownSyscallsAreAllowed) {
  SeccompProfile p = DefaultDenyProfile();
  p.unknown_syscalls_enosys = false;
  ASSERT_COMPILED(prog, p);
  EXPECT_EQ(Verdict(prog, NewestKnownSyscall() + 1), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Verdict(prog, SYS_mount), SECCOMP_RET_ERRNO | EPERM);
}

}  // namespace
}  // namespace mp::sandbox

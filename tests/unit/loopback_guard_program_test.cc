// The loopback guard's program (sandbox/loopback_guard.h) run by a small interpreter of the
// instruction forms it uses, against sock_addr contexts and a map of host addresses: the
// verdict for loopback, mapped, unspecified, the host's own and ordinary destinations, in the
// guarded namespace and in another one, and the port-53 exception; and the bind guard's verdict
// on service ports, port 0 and the ephemeral range. The kernel's own run (EPERM at connect and
// at bind) is tests/privileged/ loopback_guard_test.cc.
#include "sandbox/loopback_guard.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <string>

#include <gtest/gtest.h>

namespace mp::sandbox {
namespace {

constexpr uint64_t kHostCookie = 0x1122334455667788ull;
constexpr int kMapFd = 42;

// The host's addresses the map holds in these tests (keys as HostAddressKey).
HostAddressKey Key(const char* addr) {
  HostAddressKey k{};
  in_addr a4{};
  in6_addr a6{};
  if (inet_pton(AF_INET, addr, &a4) == 1) {
    k[10] = k[11] = 0xff;
    std::memcpy(&k[12], &a4, 4);
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, addr, &a6), 1) << addr;
    std::memcpy(k.data(), &a6, 16);
  }
  return k;
}
const std::set<HostAddressKey>& HostMap() {
  static const std::set<HostAddressKey> m = {Key("10.0.2.15"), Key("10.0.2.255"),
                                             Key("255.255.255.255"), Key("2001:db8::15"),
                                             Key("fe80::5054:ff:fe12:3456")};
  return m;
}

// Runs `prog` on `ctx` with bpf_get_netns_cookie answering `cookie` and the map with fd kMapFd
// holding HostMap(). Empty when the program uses an instruction this interpreter does not
// know, touches memory it should not, or runs off its end.
std::optional<uint64_t> Run(const std::vector<bpf_insn>& prog, const bpf_sock_addr& ctx,
                            uint64_t cookie) {
  constexpr uint64_t kCtx = 0xc0c0c0c0;    // stands for the context pointer
  constexpr uint64_t kFrame = 0xf0000000;  // stands for r10, the top of the 512-byte stack
  constexpr uint64_t kMap = 0x3a3a3a3a;    // stands for the map's address
  unsigned char stack[512] = {};
  bool written[512] = {};
  uint64_t r[11] = {};
  r[1] = kCtx;
  r[10] = kFrame;
  const auto* base = reinterpret_cast<const unsigned char*>(&ctx);
  // The stack byte for frame address `a` (kFrame - 512 .. kFrame - 1), or -1.
  auto slot = [&](uint64_t a) -> int {
    return a >= kFrame - 512 && a < kFrame ? static_cast<int>(a - (kFrame - 512)) : -1;
  };
  size_t pc = 0;
  for (int steps = 0; steps < 1000 && pc < prog.size(); ++steps) {
    const bpf_insn& i = prog[pc];
    const auto imm32 = static_cast<uint32_t>(i.imm);
    const auto imm64 = static_cast<uint64_t>(static_cast<int64_t>(i.imm));
    auto jump_if = [&](bool taken) { pc += 1 + (taken ? i.off : 0); };
    switch (i.code) {
      case BPF_ALU64 | BPF_MOV | BPF_X:
        r[i.dst_reg] = r[i.src_reg];
        ++pc;
        break;
      case BPF_ALU64 | BPF_MOV | BPF_K:
        r[i.dst_reg] = imm64;
        ++pc;
        break;
      case BPF_ALU | BPF_END | BPF_TO_BE: {
        if (i.imm != 16) return {};
        const auto v = static_cast<uint16_t>(r[i.dst_reg]);
        r[i.dst_reg] = htons(v);  // htobe16: this machine's order to big-endian, zero-extended
        ++pc;
        break;
      }
      case BPF_ALU | BPF_AND | BPF_K:
        r[i.dst_reg] = static_cast<uint32_t>(r[i.dst_reg]) & imm32;
        ++pc;
        break;
      case BPF_ALU64 | BPF_ADD | BPF_K:
        r[i.dst_reg] += imm64;
        ++pc;
        break;
      case BPF_LD | BPF_DW | BPF_IMM:
        if (i.src_reg == BPF_PSEUDO_MAP_FD) {
          if (i.imm != kMapFd) return {};
          r[i.dst_reg] = kMap;
        } else {
          r[i.dst_reg] =
              imm32 | (static_cast<uint64_t>(static_cast<uint32_t>(prog[pc + 1].imm)) << 32);
        }
        pc += 2;
        break;
      case BPF_ST | BPF_W | BPF_MEM:
      case BPF_STX | BPF_W | BPF_MEM: {
        const int at = slot(r[i.dst_reg] + static_cast<uint64_t>(static_cast<int64_t>(i.off)));
        if (i.dst_reg != 10 || at < 0 || at + 4 > 512) return {};
        const uint32_t v = (i.code & 0x07) == BPF_ST ? imm32 : static_cast<uint32_t>(r[i.src_reg]);
        std::memcpy(stack + at, &v, 4);
        for (int k = 0; k < 4; ++k) written[at + k] = true;
        ++pc;
        break;
      }
      case BPF_LDX | BPF_W | BPF_MEM: {
        if (r[i.src_reg] != kCtx || i.off < 0 || i.off + 4 > static_cast<int>(sizeof ctx))
          return {};
        uint32_t v;
        std::memcpy(&v, base + i.off, 4);
        r[i.dst_reg] = v;
        ++pc;
        break;
      }
      case BPF_JMP | BPF_CALL:
        if (i.imm == BPF_FUNC_get_netns_cookie && r[1] == kCtx) {
          r[0] = cookie;
        } else if (i.imm == BPF_FUNC_map_lookup_elem && r[1] == kMap) {
          const int at = slot(r[2]);
          if (at < 0 || at + 16 > 512) return {};
          HostAddressKey k{};
          for (int b = 0; b < 16; ++b) {
            if (!written[at + b]) return {};  // the verifier refuses an unset key byte
            k[static_cast<size_t>(b)] = stack[at + b];
          }
          r[0] = HostMap().count(k) ? 0x77770000 : 0;  // a value pointer, or NULL
        } else {
          return {};
        }
        for (int k = 1; k <= 5; ++k) r[k] = 0xdeadbeef;  // the helper clobbers r1-r5
        ++pc;
        break;
      case BPF_JMP | BPF_JNE | BPF_K:
        jump_if(r[i.dst_reg] != imm64);
        break;
      case BPF_JMP | BPF_JA:
        jump_if(true);
        break;
      case BPF_JMP | BPF_JNE | BPF_X:
        jump_if(r[i.dst_reg] != r[i.src_reg]);
        break;
      case BPF_JMP32 | BPF_JEQ | BPF_K:
        jump_if(static_cast<uint32_t>(r[i.dst_reg]) == imm32);
        break;
      case BPF_JMP32 | BPF_JNE | BPF_K:
        jump_if(static_cast<uint32_t>(r[i.dst_reg]) != imm32);
        break;
      case BPF_JMP32 | BPF_JLT | BPF_K:
        jump_if(static_cast<uint32_t>(r[i.dst_reg]) < imm32);
        break;
      case BPF_JMP32 | BPF_JGT | BPF_K:
        jump_if(static_cast<uint32_t>(r[i.dst_reg]) > imm32);
        break;
      case BPF_JMP | BPF_EXIT:
        return r[0];
      default:
        return {};
    }
  }
  return {};
}

bpf_sock_addr V4(const char* addr, uint16_t port) {
  bpf_sock_addr c{};
  c.user_family = AF_INET;
  in_addr a{};
  EXPECT_EQ(inet_pton(AF_INET, addr, &a), 1) << addr;
  std::memcpy(&c.user_ip4, &a, 4);
  c.user_port = htons(port);
  return c;
}

bpf_sock_addr V6(const char* addr, uint16_t port) {
  bpf_sock_addr c{};
  c.user_family = AF_INET6;
  in6_addr a{};
  EXPECT_EQ(inet_pton(AF_INET6, addr, &a), 1) << addr;
  std::memcpy(c.user_ip6, &a, 16);
  c.user_port = htons(port);
  return c;
}

std::string Verdict(bool ipv6, const bpf_sock_addr& ctx, uint64_t cookie = kHostCookie) {
  const auto r = Run(BuildLoopbackGuardProgram(ipv6, kHostCookie, kMapFd), ctx, cookie);
  if (!r) return "bad program";
  return *r == 1 ? "allow" : *r == 0 ? "deny" : "returned " + std::to_string(*r);
}

TEST(LoopbackGuardProgramTest, DeniesIpv4LoopbackAndUnspecifiedInTheHostNamespace) {
  EXPECT_EQ(Verdict(false, V4("127.0.0.1", 3200)), "deny");
  EXPECT_EQ(Verdict(false, V4("127.200.3.4", 3443)), "deny");
  EXPECT_EQ(Verdict(false, V4("0.0.0.0", 3200)), "deny");
  EXPECT_EQ(Verdict(false, V4("10.0.2.3", 3200)), "allow");
  EXPECT_EQ(Verdict(false, V4("128.0.0.1", 80)), "allow");
  EXPECT_EQ(Verdict(false, V4("1.127.0.0", 80)), "allow");
}

TEST(LoopbackGuardProgramTest, DeniesIpv6LoopbackMappedAndUnspecified) {
  EXPECT_EQ(Verdict(true, V6("::1", 3200)), "deny");
  EXPECT_EQ(Verdict(true, V6("::", 3200)), "deny");
  EXPECT_EQ(Verdict(true, V6("::ffff:127.0.0.1", 3200)), "deny");
  EXPECT_EQ(Verdict(true, V6("::ffff:127.9.9.9", 22)), "deny");
  EXPECT_EQ(Verdict(true, V6("::ffff:0.0.0.0", 22)), "deny");
  EXPECT_EQ(Verdict(true, V6("::ffff:10.0.2.3", 22)), "allow");
  EXPECT_EQ(Verdict(true, V6("::2", 22)), "allow");
  EXPECT_EQ(Verdict(true, V6("fe80::1", 22)), "allow");
  EXPECT_EQ(Verdict(true, V6("2001:db8::1", 443)), "allow");
  EXPECT_EQ(Verdict(true, V6("1::1", 443)), "allow");
  EXPECT_EQ(Verdict(true, V6("0:0:1::1", 443)), "allow");
}

TEST(LoopbackGuardProgramTest, AnotherNamespaceKeepsItsLoopback) {
  EXPECT_EQ(Verdict(false, V4("127.0.0.1", 3200), kHostCookie + 1), "allow");
  EXPECT_EQ(Verdict(true, V6("::1", 3200), kHostCookie + 1), "allow");
}

TEST(LoopbackGuardProgramTest, DeniesTheHostsOwnAddressesInEveryForm) {
  EXPECT_EQ(Verdict(false, V4("10.0.2.15", 3200)), "deny");
  EXPECT_EQ(Verdict(true, V6("::ffff:10.0.2.15", 3200)), "deny");
  EXPECT_EQ(Verdict(false, V4("10.0.2.255", 9)), "deny") << "the subnet's broadcast";
  EXPECT_EQ(Verdict(false, V4("255.255.255.255", 9)), "deny");
  EXPECT_EQ(Verdict(true, V6("2001:db8::15", 443)), "deny");
  EXPECT_EQ(Verdict(true, V6("fe80::5054:ff:fe12:3456", 22)), "deny");
  // Neighbours are not the host.
  EXPECT_EQ(Verdict(false, V4("10.0.2.2", 3200)), "allow");
  EXPECT_EQ(Verdict(true, V6("::ffff:10.0.2.16", 3200)), "allow");
  EXPECT_EQ(Verdict(true, V6("2001:db8::16", 443)), "allow");
  // Another namespace, or DNS, goes on as before.
  EXPECT_EQ(Verdict(false, V4("10.0.2.15", 3200), kHostCookie + 1), "allow");
  EXPECT_EQ(Verdict(false, V4("10.0.2.15", 53)), "allow");
}

TEST(LoopbackGuardProgramTest, Port53StaysOpenForALoopbackResolver) {
  EXPECT_EQ(Verdict(false, V4("127.0.0.53", 53)), "allow");
  EXPECT_EQ(Verdict(true, V6("::1", 53)), "allow");
  EXPECT_EQ(Verdict(false, V4("127.0.0.53", 5353)), "deny");
}

std::string BindVerdict(const bpf_sock_addr& ctx, uint64_t cookie = kHostCookie) {
  const auto r = Run(BuildBindGuardProgram(kHostCookie, PortRange{32768, 60999}), ctx, cookie);
  if (!r) return "bad program";
  return *r == 1 ? "allow" : *r == 0 ? "deny" : "returned " + std::to_string(*r);
}

TEST(BindGuardProgramTest, RefusesServicePortsInTheHostNamespace) {
  EXPECT_EQ(BindVerdict(V4("127.0.0.1", 3200)), "deny");
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 3443)), "deny");
  EXPECT_EQ(BindVerdict(V6("::", 8080)), "deny");
  EXPECT_EQ(BindVerdict(V6("::1", 1)), "deny");
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 32767)), "deny") << "just below the range";
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 61000)), "deny") << "just above it";
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 65535)), "deny");
  // Ports whose network-order bytes, read the wrong way round, would land in the range.
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 0x0090)), "deny") << "144 (0x9000 swapped)";
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 0x1080)), "deny") << "4224 (0x8010 swapped)";
}

TEST(BindGuardProgramTest, AllowsPortZeroAndTheEphemeralRange) {
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 0)), "allow");
  EXPECT_EQ(BindVerdict(V6("::", 0)), "allow");
  EXPECT_EQ(BindVerdict(V4("127.0.0.1", 32768)), "allow");
  EXPECT_EQ(BindVerdict(V6("::1", 45000)), "allow");
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 60999)), "allow");
}

TEST(BindGuardProgramTest, AnotherNamespaceBindsAnyPort) {
  EXPECT_EQ(BindVerdict(V4("127.0.0.1", 3200), kHostCookie + 1), "allow");
  EXPECT_EQ(BindVerdict(V6("::", 80), kHostCookie + 1), "allow");
}

TEST(BindGuardProgramTest, EphemeralPortRangeReadsTheSysctl) {
  char path[] = "/tmp/mp-port-range-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  auto write = [&](const char* text) {
    ASSERT_EQ(::ftruncate(fd, 0), 0);
    ASSERT_EQ(::pwrite(fd, text, std::strlen(text), 0), static_cast<ssize_t>(std::strlen(text)));
  };
  write("32768\t60999\n");
  auto r = EphemeralPortRange(path);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->low, 32768);
  EXPECT_EQ(r->high, 60999);
  for (const char* bad : {"", "0 100\n", "500 400\n", "1 70000\n", "x y\n"}) {
    write(bad);
    auto e = EphemeralPortRange(path);
    ASSERT_FALSE(e) << "\"" << bad << "\"";
    EXPECT_NE(e.error().ToString().find("LOW HIGH"), std::string::npos) << e.error().ToString();
  }
  ::close(fd);
  ::unlink(path);
  EXPECT_FALSE(EphemeralPortRange(path));
}

}  // namespace
}  // namespace mp::sandbox

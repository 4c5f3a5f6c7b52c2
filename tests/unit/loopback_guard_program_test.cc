// The loopback guard's program (sandbox/loopback_guard.h) run by a small interpreter of the
// instruction forms it uses, against sock_addr contexts: the verdict for loopback, mapped,
// unspecified and ordinary destinations, in the guarded namespace and in another one, and the
// port-53 exception. The kernel's own run (EPERM at connect) is tests/privileged/
// loopback_guard_test.cc.
#include "sandbox/loopback_guard.h"

#include <arpa/inet.h>

#include <cstddef>
#include <cstring>
#include <optional>
#include <string>

#include <gtest/gtest.h>

namespace mp::sandbox {
namespace {

constexpr uint64_t kHostCookie = 0x1122334455667788ull;

// Runs `prog` on `ctx` with bpf_get_netns_cookie answering `cookie`. Empty when the program
// uses an instruction this interpreter does not know or runs off its end.
std::optional<uint64_t> Run(const std::vector<bpf_insn>& prog, const bpf_sock_addr& ctx,
                            uint64_t cookie) {
  constexpr uint64_t kCtx = 0xc0c0c0c0;  // stands for the context pointer
  uint64_t r[11] = {};
  r[1] = kCtx;
  const auto* base = reinterpret_cast<const unsigned char*>(&ctx);
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
      case BPF_ALU | BPF_AND | BPF_K:
        r[i.dst_reg] = static_cast<uint32_t>(r[i.dst_reg]) & imm32;
        ++pc;
        break;
      case BPF_LD | BPF_DW | BPF_IMM:
        r[i.dst_reg] =
            imm32 | (static_cast<uint64_t>(static_cast<uint32_t>(prog[pc + 1].imm)) << 32);
        pc += 2;
        break;
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
        if (i.imm != BPF_FUNC_get_netns_cookie || r[1] != kCtx) return {};
        r[0] = cookie;
        for (int k = 1; k <= 5; ++k) r[k] = 0xdeadbeef;  // the helper clobbers r1-r5
        ++pc;
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
  const auto r = Run(BuildLoopbackGuardProgram(ipv6, kHostCookie), ctx, cookie);
  if (!r) return "bad program";
  return *r == 1 ? "allow" : *r == 0 ? "deny" : "returned " + std::to_string(*r);
}

TEST(LoopbackGuardProgramTest, DeniesIpv4LoopbackAndUnspecifiedInTheHostNamespace) {
  EXPECT_EQ(Verdict(false, V4("127.0.0.1", 3200)), "deny");
  EXPECT_EQ(Verdict(false, V4("127.200.3.4", 3443)), "deny");
  EXPECT_EQ(Verdict(false, V4("0.0.0.0", 3200)), "deny");
  EXPECT_EQ(Verdict(false, V4("10.0.2.15", 3200)), "allow");
  EXPECT_EQ(Verdict(false, V4("128.0.0.1", 80)), "allow");
  EXPECT_EQ(Verdict(false, V4("1.127.0.0", 80)), "allow");
}

TEST(LoopbackGuardProgramTest, DeniesIpv6LoopbackMappedAndUnspecified) {
  EXPECT_EQ(Verdict(true, V6("::1", 3200)), "deny");
  EXPECT_EQ(Verdict(true, V6("::", 3200)), "deny");
  EXPECT_EQ(Verdict(true, V6("::ffff:127.0.0.1", 3200)), "deny");
  EXPECT_EQ(Verdict(true, V6("::ffff:127.9.9.9", 22)), "deny");
  EXPECT_EQ(Verdict(true, V6("::ffff:0.0.0.0", 22)), "deny");
  EXPECT_EQ(Verdict(true, V6("::ffff:10.0.2.15", 22)), "allow");
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

TEST(LoopbackGuardProgramTest, Port53StaysOpenForALoopbackResolver) {
  EXPECT_EQ(Verdict(false, V4("127.0.0.53", 53)), "allow");
  EXPECT_EQ(Verdict(true, V6("::1", 53)), "allow");
  EXPECT_EQ(Verdict(false, V4("127.0.0.53", 5353)), "deny");
}

}  // namespace
}  // namespace mp::sandbox

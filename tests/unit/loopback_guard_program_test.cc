// The loopback guard's program (sandbox/loopback_guard.h) run by a small interpreter of the
// instruction forms it uses, against sock_addr contexts and a map of host addresses: the
// verdict for loopback, mapped, unspecified, the host's own and ordinary destinations, in the
// guarded namespace and in another one, and the port-53 exception; and the bind guard's verdict
// on service ports, port 0 and the ephemeral range, with its map holding a narrowed range,
// reserved ports, or nothing (fail closed); the refresh retry's backoff. The kernel's own run
// (EPERM at connect and at bind) is tests/privileged/ loopback_guard_test.cc.
#include "sandbox/loopback_guard.h"

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mp::sandbox {
namespace {

constexpr uint64_t kHostCookie = 0x1122334455667788ull;
constexpr int kMapFd = 42;
constexpr int kBindMapFd = 43;
// What the bind guard's map holds in these tests (nullptr: its lookup finds nothing).
const BindGuardRules* bind_rules = nullptr;

// An address as the map's 16 bytes (IPv4 as ::ffff:a.b.c.d) and its family's width in bits.
std::array<uint8_t, 16> Bytes(const char* addr, uint32_t* width = nullptr) {
  std::array<uint8_t, 16> k{};
  in_addr a4{};
  in6_addr a6{};
  if (inet_pton(AF_INET, addr, &a4) == 1) {
    k[10] = k[11] = 0xff;
    std::memcpy(&k[12], &a4, 4);
    if (width) *width = 32;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, addr, &a6), 1) << addr;
    std::memcpy(k.data(), &a6, 16);
    if (width) *width = 128;
  }
  return k;
}
// "a.b.c.d/len" or "x::y/len" (no /len: the whole address) as the map keys it.
HostPrefix Prefix(const std::string& text) {
  const size_t slash = text.find('/');
  uint32_t width = 0;
  const auto addr = Bytes(text.substr(0, slash).c_str(), &width);
  const uint32_t len = slash == std::string::npos ? width : std::stoul(text.substr(slash + 1));
  return MakeHostPrefix(addr, (width == 32 ? 96 : 0) + len);
}
// What the host answers for in these tests (as HostPrefixes() would find it).
const std::vector<HostPrefix>& HostMap() {
  static const std::vector<HostPrefix> m = {
      Prefix("10.0.2.15"),
      Prefix("10.0.2.255"),
      Prefix("255.255.255.255"),
      Prefix("2001:db8::15"),
      Prefix("fe80::5054:ff:fe12:3456"),
      Prefix("192.0.2.0/24"),  // a prefix on lo, or an AnyIP range
      Prefix("224.0.0.0/4"),
      Prefix("ff00::/8"),
      Prefix("2001:db8:1::")};  // anycast
  return m;
}
// The LPM trie's lookup: does a prefix of the map hold `key` (prefixlen, then 16 bytes)?
bool TrieHolds(const HostPrefix& key) {
  for (const HostPrefix& p : HostMap()) {
    if (key.prefixlen < p.prefixlen) continue;
    if (MakeHostPrefix(key.addr, p.prefixlen) == p) return true;
  }
  return false;
}

// Runs `prog` on `ctx` with bpf_get_netns_cookie answering `cookie` and the map with fd kMapFd
// holding HostMap(). Empty when the program uses an instruction this interpreter does not
// know, touches memory it should not, or runs off its end.
std::optional<uint64_t> Run(const std::vector<bpf_insn>& prog, const bpf_sock_addr& ctx,
                            uint64_t cookie) {
  constexpr uint64_t kCtx = 0xc0c0c0c0;    // stands for the context pointer
  constexpr uint64_t kFrame = 0xf0000000;  // stands for r10, the top of the 512-byte stack
  constexpr uint64_t kMap = 0x3a3a3a3a;    // stands for the map's address
  constexpr uint64_t kBindMap = 0x4b4b4b4b;
  constexpr uint64_t kRules = 0x50000000;  // stands for the bind map's value (*bind_rules)
  // The rules' byte for address `a` (kRules .. kRules + 8199, `size` bytes), or -1.
  auto rules_at = [&](uint64_t a, size_t size) -> int {
    if (bind_rules == nullptr || a < kRules || a + size > kRules + sizeof(BindGuardRules))
      return -1;
    return static_cast<int>(a - kRules);
  };
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
      case BPF_ALU64 | BPF_ADD | BPF_X:
        r[i.dst_reg] += r[i.src_reg];
        ++pc;
        break;
      case BPF_ALU64 | BPF_RSH | BPF_K:
        r[i.dst_reg] >>= (imm32 & 63);
        ++pc;
        break;
      case BPF_ALU | BPF_RSH | BPF_X:
        r[i.dst_reg] = static_cast<uint32_t>(r[i.dst_reg]) >> (r[i.src_reg] & 31);
        ++pc;
        break;
      case BPF_LD | BPF_DW | BPF_IMM:
        if (i.src_reg == BPF_PSEUDO_MAP_FD) {
          if (i.imm != kMapFd && i.imm != kBindMapFd) return {};
          r[i.dst_reg] = i.imm == kMapFd ? kMap : kBindMap;
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
      case BPF_LDX | BPF_W | BPF_MEM:
      case BPF_LDX | BPF_B | BPF_MEM: {
        const size_t size = (i.code & 0x18) == BPF_B ? 1 : 4;
        uint32_t v = 0;
        if (const int at = rules_at(r[i.src_reg] + static_cast<uint64_t>(i.off), size); at >= 0) {
          std::memcpy(&v, reinterpret_cast<const unsigned char*>(bind_rules) + at, size);
        } else if (r[i.src_reg] == kCtx && i.off >= 0 && i.off + size <= sizeof ctx) {
          std::memcpy(&v, base + i.off, size);
        } else {
          return {};
        }
        r[i.dst_reg] = v;
        ++pc;
        break;
      }
      case BPF_JMP | BPF_CALL:
        if (i.imm == BPF_FUNC_get_netns_cookie && r[1] == kCtx) {
          r[0] = cookie;
        } else if (i.imm == BPF_FUNC_map_lookup_elem && r[1] == kMap) {
          const int at = slot(r[2]);
          if (at < 0 || at + static_cast<int>(sizeof(HostPrefix)) > 512) return {};
          unsigned char raw[sizeof(HostPrefix)];
          for (size_t b = 0; b < sizeof raw; ++b) {
            if (!written[at + b]) return {};  // the verifier refuses an unset key byte
            raw[b] = stack[at + b];
          }
          HostPrefix k;
          std::memcpy(&k.prefixlen, raw, 4);
          std::memcpy(k.addr.data(), raw + 4, 16);
          if (k.prefixlen != 128) return {};     // a lookup asks for the whole address
          r[0] = TrieHolds(k) ? 0x77770000 : 0;  // a value pointer, or NULL
        } else if (i.imm == BPF_FUNC_map_lookup_elem && r[1] == kBindMap) {
          const int at = slot(r[2]);
          if (at < 0 || at + 4 > 512) return {};
          for (int b = 0; b < 4; ++b) {
            if (!written[at + b] || stack[at + b] != 0) return {};  // key 0, the one entry
          }
          r[0] = bind_rules != nullptr ? kRules : 0;
        } else {
          return {};
        }
        for (int k = 1; k <= 5; ++k) r[k] = 0xdeadbeef;  // the helper clobbers r1-r5
        ++pc;
        break;
      case BPF_JMP | BPF_JNE | BPF_K:
        jump_if(r[i.dst_reg] != imm64);
        break;
      case BPF_JMP | BPF_JEQ | BPF_K:
        jump_if(r[i.dst_reg] == imm64);
        break;
      case BPF_JMP32 | BPF_JLT | BPF_X:
        jump_if(static_cast<uint32_t>(r[i.dst_reg]) < static_cast<uint32_t>(r[i.src_reg]));
        break;
      case BPF_JMP32 | BPF_JGT | BPF_X:
        jump_if(static_cast<uint32_t>(r[i.dst_reg]) > static_cast<uint32_t>(r[i.src_reg]));
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

TEST(LoopbackGuardProgramTest, DeniesWhatTheLocalTableHoldsBeyondTheAddresses) {
  // A prefix on lo (or AnyIP): every address in it, not only the one named.
  EXPECT_EQ(Verdict(false, V4("192.0.2.77", 80)), "deny");
  EXPECT_EQ(Verdict(true, V6("::ffff:192.0.2.200", 80)), "deny");
  EXPECT_EQ(Verdict(false, V4("192.0.3.1", 80)), "allow") << "just past the /24";
  // Multicast: a host service may have joined any group.
  EXPECT_EQ(Verdict(false, V4("224.0.0.1", 9)), "deny");
  EXPECT_EQ(Verdict(false, V4("239.255.255.250", 1900)), "deny");
  EXPECT_EQ(Verdict(true, V6("ff02::1", 9)), "deny");
  EXPECT_EQ(Verdict(true, V6("ff05::c", 1900)), "deny");
  EXPECT_EQ(Verdict(false, V4("223.255.255.255", 9)), "allow");
  // IPv6 anycast (the subnet-router address of a prefix the host routes).
  EXPECT_EQ(Verdict(true, V6("2001:db8:1::", 443)), "deny");
  EXPECT_EQ(Verdict(true, V6("2001:db8:1::1", 443)), "allow");
}

TEST(LoopbackGuardProgramTest, Port53StaysOpenForALoopbackResolver) {
  EXPECT_EQ(Verdict(false, V4("127.0.0.53", 53)), "allow");
  EXPECT_EQ(Verdict(true, V6("::1", 53)), "allow");
  EXPECT_EQ(Verdict(false, V4("127.0.0.53", 5353)), "deny");
}

// --- ParseLocalRoutes on replies built here as the kernel lays them out.

class Dump {
 public:
  // One RTM_NEWROUTE message.
  Dump& Route(uint8_t family, uint8_t type, uint8_t table, const char* dst, uint8_t dst_len,
              std::optional<uint32_t> table_attr = std::nullopt) {
    std::vector<uint8_t> body(NLMSG_ALIGN(sizeof(rtmsg)));
    rtmsg rt{};
    rt.rtm_family = family;
    rt.rtm_type = type;
    rt.rtm_table = table;
    rt.rtm_dst_len = dst_len;
    std::memcpy(body.data(), &rt, sizeof rt);
    if (dst != nullptr) {
      uint8_t a[16];
      EXPECT_EQ(inet_pton(family, dst, a), 1) << dst;
      Attr(&body, RTA_DST, a, family == AF_INET ? 4 : 16);
    }
    if (table_attr) Attr(&body, RTA_TABLE, &*table_attr, 4);
    return Message(RTM_NEWROUTE, body);
  }
  Dump& Done(int status = 0) {
    std::vector<uint8_t> body(sizeof status);
    std::memcpy(body.data(), &status, sizeof status);
    return Message(NLMSG_DONE, body);
  }
  Dump& Error(int err) {
    std::vector<uint8_t> body(sizeof(nlmsgerr));
    nlmsgerr e{};
    e.error = -err;
    std::memcpy(body.data(), &e, sizeof e);
    return Message(NLMSG_ERROR, body);
  }
  std::vector<uint8_t>& bytes() { return buf_; }

 private:
  static void Attr(std::vector<uint8_t>* body, uint16_t type, const void* data, size_t len) {
    rtattr ra{};
    ra.rta_type = type;
    ra.rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
    const size_t at = body->size();
    body->resize(at + RTA_SPACE(len));
    std::memcpy(body->data() + at, &ra, sizeof ra);
    std::memcpy(body->data() + at + RTA_LENGTH(0), data, len);
  }
  Dump& Message(uint16_t type, const std::vector<uint8_t>& body) {
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(body.size()));
    const size_t at = buf_.size();
    buf_.resize(at + NLMSG_ALIGN(h.nlmsg_len));
    std::memcpy(buf_.data() + at, &h, sizeof h);
    std::memcpy(buf_.data() + at + NLMSG_HDRLEN, body.data(), body.size());
    return *this;
  }
  std::vector<uint8_t> buf_;
};

std::vector<std::string> Parsed(Dump& d, bool want_done = true) {
  std::vector<HostPrefix> out;
  auto r = ParseLocalRoutes(d.bytes().data(), d.bytes().size(), &out);
  EXPECT_TRUE(r) << r.error().ToString();
  if (r) {
    EXPECT_EQ(*r, want_done);
  }
  std::vector<std::string> text;
  for (const HostPrefix& p : out) {
    char a[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, p.addr.data(), a, sizeof a);
    text.push_back(std::string(a) + "/" + std::to_string(p.prefixlen));
  }
  return text;
}

TEST(ParseLocalRoutesTest, TakesEveryLocalRouteAndTheLocalTablesBroadcastAnycastMulticast) {
  Dump d;
  d.Route(AF_INET, RTN_LOCAL, RT_TABLE_LOCAL, "10.0.2.15", 32)
      .Route(AF_INET, RTN_BROADCAST, RT_TABLE_LOCAL, "10.0.2.255", 32)
      .Route(AF_INET, RTN_LOCAL, RT_TABLE_LOCAL, "192.0.2.77", 24)     // bits past /24 dropped
      .Route(AF_INET, RTN_UNICAST, RT_TABLE_MAIN, "10.0.2.0", 24)      // not a local type
      .Route(AF_INET, RTN_UNICAST, RT_TABLE_LOCAL, "10.9.9.9", 32)     // not a local type
      .Route(AF_INET, RTN_BROADCAST, RT_TABLE_MAIN, "10.3.3.255", 32)  // not the local table
      .Route(AF_INET, RTN_LOCAL, RT_TABLE_UNSPEC, "10.1.1.1", 32, RT_TABLE_MAIN)
      .Route(AF_INET, RTN_LOCAL, RT_TABLE_UNSPEC, "10.2.2.2", 32, RT_TABLE_LOCAL)
      .Route(AF_INET, RTN_LOCAL, RT_TABLE_UNSPEC, "10.4.4.4", 32, 1001)  // a VRF's table
      .Route(AF_INET6, RTN_LOCAL, RT_TABLE_LOCAL, "2001:db8::15", 128)
      .Route(AF_INET6, RTN_ANYCAST, RT_TABLE_LOCAL, "2001:db8::", 128)
      .Route(AF_INET6, RTN_MULTICAST, RT_TABLE_LOCAL, "ff00::", 8)
      .Route(AF_INET, RTN_LOCAL, RT_TABLE_LOCAL, nullptr, 0)  // AnyIP for everything
      .Done();
  EXPECT_EQ(Parsed(d), (std::vector<std::string>{
                           "::ffff:10.0.2.15/128", "::ffff:10.0.2.255/128", "::ffff:192.0.2.0/120",
                           "::ffff:10.1.1.1/128", "::ffff:10.2.2.2/128", "::ffff:10.4.4.4/128",
                           "2001:db8::15/128", "2001:db8::/128", "ff00::/8", "::ffff:0.0.0.0/96"}));
}

// A dump during which the routes changed may miss one: EAGAIN, so that it is taken again.
TEST(ParseLocalRoutesTest, AnInterruptedDumpIsRetriedNotTaken) {
  Dump d;
  d.Route(AF_INET, RTN_LOCAL, RT_TABLE_LOCAL, "10.0.2.15", 32).Done();
  std::vector<HostPrefix> out;
  ASSERT_TRUE(ParseLocalRoutes(d.bytes().data(), d.bytes().size(), &out));
  nlmsghdr h{};
  std::memcpy(&h, d.bytes().data(), sizeof h);
  h.nlmsg_flags |= NLM_F_DUMP_INTR;
  std::memcpy(d.bytes().data(), &h, sizeof h);
  out.clear();
  const auto r = ParseLocalRoutes(d.bytes().data(), d.bytes().size(), &out);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum, EAGAIN);
  EXPECT_NE(r.error().ToString().find("interrupted"), std::string::npos) << r.error().ToString();
}

TEST(ParseLocalRoutesTest, AnUnfinishedDumpSaysSo) {
  Dump d;
  d.Route(AF_INET, RTN_LOCAL, RT_TABLE_LOCAL, "10.0.2.15", 32);
  EXPECT_EQ(Parsed(d, false), std::vector<std::string>{"::ffff:10.0.2.15/128"});
}

TEST(ParseLocalRoutesTest, RefusesErrorsAndMalformedMessages) {
  std::vector<HostPrefix> out;
  Dump err;
  err.Error(EPERM);
  auto r = ParseLocalRoutes(err.bytes().data(), err.bytes().size(), &out);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("local routing table"), std::string::npos);
  // A dump that failed part way: its NLMSG_DONE carries the error, the routes before it are
  // not the whole table.
  Dump failed;
  failed.Route(AF_INET, RTN_LOCAL, RT_TABLE_LOCAL, "10.0.2.15", 32).Done(-ENOMEM);
  auto f = ParseLocalRoutes(failed.bytes().data(), failed.bytes().size(), &out);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().errnum, ENOMEM);
  out.clear();
  // Cut short anywhere inside a route message: an error, never a read past the end.
  Dump d;
  d.Route(AF_INET6, RTN_LOCAL, RT_TABLE_LOCAL, "2001:db8::15", 128);
  std::vector<uint8_t> whole = d.bytes();
  for (size_t cut = 1; cut < whole.size(); ++cut) {
    std::vector<uint8_t> part(whole.begin(), whole.begin() + static_cast<long>(cut));
    uint32_t len = static_cast<uint32_t>(cut);  // a header that claims only what is there
    if (cut >= sizeof(nlmsghdr)) std::memcpy(part.data(), &len, 4);
    out.clear();
    auto p = ParseLocalRoutes(part.data(), part.size(), &out);
    EXPECT_FALSE(p) << "cut at " << cut;
  }
  // A destination longer than the family allows.
  Dump wide;
  wide.Route(AF_INET, RTN_LOCAL, RT_TABLE_LOCAL, "10.0.2.15", 33).Done();
  EXPECT_FALSE(ParseLocalRoutes(wide.bytes().data(), wide.bytes().size(), &out));
}

// The bind guard's verdict with its map holding `rules` (the default: Debian's range, nothing
// reserved; nullptr: the lookup finds nothing).
const BindGuardRules kDefaultRules = MakeBindGuardRules(PortRange{32768, 60999}, {});
std::string BindVerdict(const bpf_sock_addr& ctx, uint64_t cookie = kHostCookie,
                        const BindGuardRules* rules = &kDefaultRules) {
  bind_rules = rules;
  const auto r = Run(BuildBindGuardProgram(kHostCookie, kBindMapFd), ctx, cookie);
  bind_rules = nullptr;
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

TEST(BindGuardProgramTest, TheRangeIsTheMapsNotTheProgramsANarrowedOneHoldsAtOnce) {
  // One program (as loaded), two contents of its map: the supervisor narrowed the range.
  const BindGuardRules narrowed = MakeBindGuardRules(PortRange{40000, 50000}, {});
  EXPECT_EQ(BindVerdict(V4("127.0.0.1", 35000)), "allow") << "in the old range";
  EXPECT_EQ(BindVerdict(V4("127.0.0.1", 35000), kHostCookie, &narrowed), "deny");
  EXPECT_EQ(BindVerdict(V6("::", 39999), kHostCookie, &narrowed), "deny");
  EXPECT_EQ(BindVerdict(V6("::", 50001), kHostCookie, &narrowed), "deny");
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 40000), kHostCookie, &narrowed), "allow");
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 50000), kHostCookie, &narrowed), "allow");
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 0), kHostCookie, &narrowed), "allow");
  // The whole port space: every port but 0 is in the range.
  const BindGuardRules all = MakeBindGuardRules(PortRange{1, 65535}, {});
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 1), kHostCookie, &all), "allow");
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 65535), kHostCookie, &all), "allow");
}

TEST(BindGuardProgramTest, RefusesReservedPortsInsideTheRange) {
  const BindGuardRules rules = MakeBindGuardRules(
      PortRange{32768, 60999}, {{40000, 40000}, {50000, 50007}, {60999, 60999}, {65535, 65535}});
  EXPECT_EQ(BindVerdict(V4("127.0.0.1", 40000), kHostCookie, &rules), "deny");
  EXPECT_EQ(BindVerdict(V6("::", 40000), kHostCookie, &rules), "deny");
  for (uint16_t port = 50000; port <= 50007; ++port) {
    EXPECT_EQ(BindVerdict(V4("0.0.0.0", port), kHostCookie, &rules), "deny") << port;
  }
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 60999), kHostCookie, &rules), "deny") << "the range's end";
  // Their neighbours (other bits of the same bytes, the bytes around) stay open.
  for (uint16_t port : {39999, 40001, 40007, 49999, 50008, 60998}) {
    EXPECT_EQ(BindVerdict(V4("0.0.0.0", port), kHostCookie, &rules), "allow") << port;
  }
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 65535), kHostCookie, &rules), "deny") << "outside anyway";
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 0), kHostCookie, &rules), "allow");
  EXPECT_EQ(BindVerdict(V4("127.0.0.1", 40000), kHostCookie + 1, &rules), "allow")
      << "another namespace";
}

TEST(BindGuardProgramTest, FailsClosedWhenTheMapHasNoRules) {
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 40000), kHostCookie, nullptr), "deny");
  EXPECT_EQ(BindVerdict(V6("::", 0), kHostCookie, nullptr), "deny");
  EXPECT_EQ(BindVerdict(V4("0.0.0.0", 3200), kHostCookie + 1, nullptr), "allow")
      << "another namespace is not asked about";
}

TEST(BindGuardProgramTest, MakeBindGuardRulesSetsOneBitPerReservedPort) {
  const BindGuardRules r =
      MakeBindGuardRules(PortRange{1024, 4999}, {{0, 0}, {9, 17}, {65535, 65535}});
  EXPECT_EQ(r.low, 1024u);
  EXPECT_EQ(r.high, 4999u);
  EXPECT_EQ(ReservedPortCount(r), 11u);
  EXPECT_EQ(r.reserved[0], 0x01);
  EXPECT_EQ(r.reserved[1], 0xfe) << "9..15";
  EXPECT_EQ(r.reserved[2], 0x03) << "16, 17";
  EXPECT_EQ(r.reserved[8191], 0x80);
  EXPECT_EQ(ReservedPortCount(MakeBindGuardRules(PortRange{1, 2}, {{0, 65535}})), 65536u);
  EXPECT_EQ(MakeBindGuardRules(PortRange{1, 2}, {{5, 6}}),
            MakeBindGuardRules(PortRange{1, 2}, {{6, 6}, {5, 5}}));
}

TEST(LoopbackGuardRefreshTest, RetriesBackOffFromOneSecondToThirty) {
  std::chrono::milliseconds d{0};
  std::vector<long long> seen;
  for (int i = 0; i < 8; ++i) {
    d = NextRefreshRetry(d);
    seen.push_back(d.count());
  }
  EXPECT_EQ(seen, (std::vector<long long>{1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000}));
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

// The loopback guard's program, written out instruction by instruction, its map of what the
// host answers for (read from the local routing table), and their loading, attaching and refreshing
// with bpf(2). The program (the IPv6 variant; the IPv4 one checks user_ip4 only and builds its key
// from it):
//
//   r6 = r1                           keep the context (bpf_sock_addr) across the helper calls
//   call bpf_get_netns_cookie         r0 = cookie of the socket's network namespace
//   r2 = <host cookie> (64-bit)       read by the supervisor at start (SO_NETNS_COOKIE)
//   if r0 != r2 goto allow            a session's own namespace keeps its own loopback
//   w2 = ctx->user_port               port 53 stays open: a resolver on loopback
//   if w2 == htons(53) goto allow
//   w2 = ctx->user_ip6[0]             ::/96 and ::ffff:0:0/96 have three zero words...
//   if w2 != 0 goto lookup
//   w2 = ctx->user_ip6[1]
//   if w2 != 0 goto lookup
//   w2 = ctx->user_ip6[2]
//   if w2 == htonl(0xffff) goto v4    ...except the mapped prefix's third word
//   if w2 != 0 goto lookup
//   w2 = ctx->user_ip6[3]
//   if w2 == htonl(1) goto deny       ::1
//   if w2 == 0 goto deny              :: (connect to the unspecified address reaches loopback)
//   goto lookup
// v4:
//   w2 = ctx->user_ip6[3]             the mapped IPv4 address (IPv4 variant: ctx->user_ip4)
//   w2 &= <first octet's byte>        network byte order: the first octet
//   if w2 == <127> goto deny          127.0.0.0/8
//   if w2 == 0 goto deny              0.0.0.0/8 (0.0.0.0 reaches loopback too)
// lookup:                             does the host answer for the destination?
//   *(u32 *)(r10 - 24) = 128          the key (HostPrefix): a whole address...
//   *(u32 *)(r10 - 20 + 4i) = ctx->user_ip6[i], i = 0..3
//                                     (IPv4 variant: 0, 0, htonl(0xffff), ctx->user_ip4)
//   r1 = <LPM trie of the host's prefixes> (64-bit, BPF_PSEUDO_MAP_FD)
//   r2 = r10; r2 += -24               ...whose longest matching prefix the trie finds
//   call bpf_map_lookup_elem
//   if r0 != 0 goto deny
// allow:
//   r0 = 1; exit                      the kernel goes on
// deny:
//   r0 = 0; exit                      connect()/sendmsg() fail with EPERM
//
// Compares of 32-bit fields use the JMP32 class (kernel >= 5.1) so that constants with the top
// bit set (htonl(0xffff) on little-endian) are not sign-extended. Supervisor only.
#include "sandbox/loopback_guard.h"

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/unique_fd.h"

namespace mp::sandbox {
namespace {

// --- A tiny assembler: one function per instruction form, jumps to labels resolved at the end.

constexpr uint8_t kR0 = BPF_REG_0, kR1 = BPF_REG_1, kR2 = BPF_REG_2, kR3 = BPF_REG_3,
                  kR6 = BPF_REG_6, kR10 = BPF_REG_10;

bpf_insn Insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

class Program {
 public:
  using Label = int;
  Label NewLabel() {
    labels_.push_back(-1);
    return static_cast<Label>(labels_.size() - 1);
  }
  void Bind(Label l) { labels_[static_cast<size_t>(l)] = static_cast<int>(insns_.size()); }

  // dst = src (64-bit)
  void MovReg(uint8_t dst, uint8_t src) { Emit(Insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)); }
  // dst = imm (64-bit, sign-extended)
  void MovImm(uint8_t dst, int32_t imm) { Emit(Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)); }
  // dst = imm64 (two instruction slots)
  void LoadImm64(uint8_t dst, uint64_t imm) {
    Emit(Insn(BPF_LD | BPF_DW | BPF_IMM, dst, 0, 0, static_cast<int32_t>(imm & 0xffffffffu)));
    Emit(Insn(0, 0, 0, 0, static_cast<int32_t>(imm >> 32)));
  }
  // dst = the map with fd `map_fd` (two instruction slots; the kernel puts the map's address)
  void LoadMapFd(uint8_t dst, int map_fd) {
    Emit(Insn(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, map_fd));
    Emit(Insn(0, 0, 0, 0, 0));
  }
  // dst += imm (64-bit)
  void AddImm(uint8_t dst, int32_t imm) { Emit(Insn(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm)); }
  // *(u32*)(dst + off) = imm / = w_src
  void StoreImm32(uint8_t dst, int16_t off, uint32_t imm) {
    Emit(Insn(BPF_ST | BPF_W | BPF_MEM, dst, 0, off, static_cast<int32_t>(imm)));
  }
  void StoreReg32(uint8_t dst, int16_t off, uint8_t src) {
    Emit(Insn(BPF_STX | BPF_W | BPF_MEM, dst, src, off, 0));
  }
  // w_dst = *(u32*)(src + off)
  void LoadU32(uint8_t dst, uint8_t src, size_t off) {
    Emit(Insn(BPF_LDX | BPF_W | BPF_MEM, dst, src, static_cast<int16_t>(off), 0));
  }
  // w_dst &= imm (32-bit)
  void And32(uint8_t dst, uint32_t imm) {
    Emit(Insn(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, static_cast<int32_t>(imm)));
  }
  // call helper
  void Call(int32_t helper) { Emit(Insn(BPF_JMP | BPF_CALL, 0, 0, 0, helper)); }
  void Exit() { Emit(Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)); }
  // goto l
  void Jump(Label l) { EmitJump(BPF_JMP | BPF_JA, 0, 0, 0, l); }
  // if dst != src goto l (64-bit)
  void JumpNeReg(uint8_t dst, uint8_t src, Label l) {
    EmitJump(BPF_JMP | BPF_JNE | BPF_X, dst, src, 0, l);
  }
  // if dst != imm goto l (64-bit)
  void JumpNeImm(uint8_t dst, int32_t imm, Label l) {
    EmitJump(BPF_JMP | BPF_JNE | BPF_K, dst, 0, imm, l);
  }
  // if w_dst == imm goto l / if w_dst != imm goto l (32-bit)
  void JumpEq32(uint8_t dst, uint32_t imm, Label l) {
    EmitJump(BPF_JMP32 | BPF_JEQ | BPF_K, dst, 0, static_cast<int32_t>(imm), l);
  }
  void JumpNe32(uint8_t dst, uint32_t imm, Label l) {
    EmitJump(BPF_JMP32 | BPF_JNE | BPF_K, dst, 0, static_cast<int32_t>(imm), l);
  }
  // if w_dst < imm goto l / if w_dst > imm goto l (32-bit, unsigned)
  void JumpLt32(uint8_t dst, uint32_t imm, Label l) {
    EmitJump(BPF_JMP32 | BPF_JLT | BPF_K, dst, 0, static_cast<int32_t>(imm), l);
  }
  void JumpGt32(uint8_t dst, uint32_t imm, Label l) {
    EmitJump(BPF_JMP32 | BPF_JGT | BPF_K, dst, 0, static_cast<int32_t>(imm), l);
  }
  // if dst == imm goto l (64-bit)
  void JumpEqImm(uint8_t dst, int32_t imm, Label l) {
    EmitJump(BPF_JMP | BPF_JEQ | BPF_K, dst, 0, imm, l);
  }
  // if w_dst < w_src goto l / if w_dst > w_src goto l (32-bit, unsigned)
  void JumpLt32Reg(uint8_t dst, uint8_t src, Label l) {
    EmitJump(BPF_JMP32 | BPF_JLT | BPF_X, dst, src, 0, l);
  }
  void JumpGt32Reg(uint8_t dst, uint8_t src, Label l) {
    EmitJump(BPF_JMP32 | BPF_JGT | BPF_X, dst, src, 0, l);
  }
  // dst += src (64-bit) / dst >>= imm (64-bit, logical) / w_dst >>= w_src (32-bit, logical)
  void AddReg(uint8_t dst, uint8_t src) { Emit(Insn(BPF_ALU64 | BPF_ADD | BPF_X, dst, src, 0, 0)); }
  void RshImm(uint8_t dst, int32_t imm) { Emit(Insn(BPF_ALU64 | BPF_RSH | BPF_K, dst, 0, 0, imm)); }
  void Rsh32Reg(uint8_t dst, uint8_t src) { Emit(Insn(BPF_ALU | BPF_RSH | BPF_X, dst, src, 0, 0)); }
  // w_dst = *(u8*)(src + off)
  void LoadU8(uint8_t dst, uint8_t src, size_t off) {
    Emit(Insn(BPF_LDX | BPF_B | BPF_MEM, dst, src, static_cast<int16_t>(off), 0));
  }
  // dst = the low 16 bits of dst read as big-endian (network order to host order)
  void FromBe16(uint8_t dst) { Emit(Insn(BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, 16)); }

  // The two ends of a guard: `allow` returns 1 (the kernel goes on), `deny` returns 0 (EPERM).
  void Verdicts(Label allow, Label deny) {
    Bind(allow);
    MovImm(kR0, 1);
    Exit();
    Bind(deny);
    MovImm(kR0, 0);
    Exit();
  }

  std::vector<bpf_insn> Finish() {
    for (const auto& [at, label] : fixups_) {
      const int target = labels_[static_cast<size_t>(label)];
      insns_[at].off = static_cast<int16_t>(target - static_cast<int>(at) - 1);
    }
    return insns_;
  }

 private:
  void Emit(bpf_insn i) { insns_.push_back(i); }
  void EmitJump(uint8_t code, uint8_t dst, uint8_t src, int32_t imm, Label l) {
    fixups_.emplace_back(insns_.size(), l);
    Emit(Insn(code, dst, src, 0, imm));
  }

  std::vector<bpf_insn> insns_;
  std::vector<int> labels_;
  std::vector<std::pair<size_t, Label>> fixups_;
};

// The u32 whose bytes in memory are a.b.c.d (how the kernel stores an address in the context).
uint32_t NetworkWord(uint32_t host_order) { return htonl(host_order); }

// How many prefixes the guard's map holds at most (allocated as used: BPF_F_NO_PREALLOC).
constexpr uint32_t kHostPrefixesMax = 16384;

long Bpf(int cmd, bpf_attr* attr) { return ::syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

struct Hook {
  bpf_attach_type type;
  bool ipv6;
  const char* name;
};
constexpr Hook kHooks[] = {
    {BPF_CGROUP_INET4_CONNECT, false, "inet4_connect"},
    {BPF_CGROUP_INET6_CONNECT, true, "inet6_connect"},
    {BPF_CGROUP_UDP4_SENDMSG, false, "udp4_sendmsg"},
    {BPF_CGROUP_UDP6_SENDMSG, true, "udp6_sendmsg"},
};
constexpr Hook kBindHooks[] = {
    {BPF_CGROUP_INET4_BIND, false, "inet4_bind"},
    {BPF_CGROUP_INET6_BIND, true, "inet6_bind"},
};

// Loads `insns` as the cgroup sock_addr program `name` for `hook`.
Result<UniqueFd> LoadProgram(const Hook& hook, const std::vector<bpf_insn>& insns,
                             const char* name) {
  static char log[8192];
  log[0] = '\0';
  bpf_attr attr{};
  attr.prog_type = BPF_PROG_TYPE_CGROUP_SOCK_ADDR;
  attr.expected_attach_type = hook.type;
  attr.insns = reinterpret_cast<uint64_t>(insns.data());
  attr.insn_cnt = static_cast<uint32_t>(insns.size());
  attr.license = reinterpret_cast<uint64_t>("GPL");
  attr.log_buf = reinterpret_cast<uint64_t>(log);
  attr.log_size = sizeof log;
  attr.log_level = 1;
  std::strncpy(attr.prog_name, name, sizeof attr.prog_name - 1);
  const long fd = Bpf(BPF_PROG_LOAD, &attr);
  if (fd < 0) {
    const int e = errno;
    return ErrnoError(e, std::string("bpf(BPF_PROG_LOAD, cgroup sock_addr program for ") +
                             hook.name + ")" +
                             (log[0] != '\0' ? ": verifier: " + std::string(log) : ""));
  }
  return UniqueFd(static_cast<int>(fd));
}

// The ids of the programs attached to the cgroup at `hook`.
Result<std::vector<uint32_t>> QueryPrograms(int cgroup_dirfd, const Hook& hook) {
  std::vector<uint32_t> ids(64);
  bpf_attr attr{};
  attr.query.target_fd = static_cast<uint32_t>(cgroup_dirfd);
  attr.query.attach_type = hook.type;
  attr.query.prog_ids = reinterpret_cast<uint64_t>(ids.data());
  attr.query.prog_cnt = static_cast<uint32_t>(ids.size());
  if (Bpf(BPF_PROG_QUERY, &attr) != 0) {
    return ErrnoError(std::string("bpf(BPF_PROG_QUERY, ") + hook.name + ")");
  }
  ids.resize(attr.query.prog_cnt < ids.size() ? attr.query.prog_cnt : ids.size());
  return ids;
}

struct ProgInfo {
  uint32_t id = 0;
  std::string name;
};

Result<ProgInfo> InfoOf(int prog_fd) {
  bpf_prog_info info{};
  bpf_attr attr{};
  attr.info.bpf_fd = static_cast<uint32_t>(prog_fd);
  attr.info.info_len = sizeof info;
  attr.info.info = reinterpret_cast<uint64_t>(&info);
  if (Bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) != 0) {
    return ErrnoError("bpf(BPF_OBJ_GET_INFO_BY_FD)");
  }
  return ProgInfo{info.id, std::string(info.name, strnlen(info.name, sizeof info.name))};
}

// Detaches the programs named `name` at `hook`, except `keep_id`.
Result<int> DetachOurs(int cgroup_dirfd, const Hook& hook, const char* name, uint32_t keep_id) {
  MP_TRY(const std::vector<uint32_t> ids, QueryPrograms(cgroup_dirfd, hook));
  int detached = 0;
  for (const uint32_t id : ids) {
    if (id == keep_id) continue;
    bpf_attr get{};
    get.prog_id = id;
    const long fd = Bpf(BPF_PROG_GET_FD_BY_ID, &get);
    if (fd < 0) continue;  // gone meanwhile
    UniqueFd prog(static_cast<int>(fd));
    MP_TRY(const ProgInfo info, InfoOf(prog.get()));
    if (info.name != name) continue;
    bpf_attr det{};
    det.target_fd = static_cast<uint32_t>(cgroup_dirfd);
    det.attach_bpf_fd = static_cast<uint32_t>(prog.get());
    det.attach_type = hook.type;
    if (Bpf(BPF_PROG_DETACH, &det) != 0) {
      return ErrnoError(std::string("bpf(BPF_PROG_DETACH, ") + hook.name + ", program id " +
                        std::to_string(id) + ")");
    }
    ++detached;
  }
  return detached;
}

// Attaches `prog` (named `name`) at `hook` beside what is there, then detaches the other
// programs of that name: new first, old after.
Result<void> AttachReplacing(int cgroup_dirfd, const Hook& hook, const UniqueFd& prog,
                             const char* name) {
  MP_TRY(const ProgInfo info, InfoOf(prog.get()));
  bpf_attr attr{};
  attr.target_fd = static_cast<uint32_t>(cgroup_dirfd);
  attr.attach_bpf_fd = static_cast<uint32_t>(prog.get());
  attr.attach_type = hook.type;
  attr.attach_flags = BPF_F_ALLOW_MULTI;
  if (Bpf(BPF_PROG_ATTACH, &attr) != 0) {
    return ErrnoError(std::string("bpf(BPF_PROG_ATTACH, cgroup ") + hook.name +
                      ", BPF_F_ALLOW_MULTI)");
  }
  MP_RETURN_IF_ERROR(DetachOurs(cgroup_dirfd, hook, name, info.id));
  return Ok();
}

}  // namespace

std::vector<bpf_insn> BuildLoopbackGuardProgram(bool ipv6, uint64_t host_netns_cookie,
                                                int host_addresses_map_fd) {
  Program p;
  const auto allow = p.NewLabel(), deny = p.NewLabel(), v4 = p.NewLabel(), lookup = p.NewLabel();
  p.MovReg(kR6, kR1);
  p.Call(BPF_FUNC_get_netns_cookie);
  p.LoadImm64(kR2, host_netns_cookie);
  p.JumpNeReg(kR0, kR2, allow);
  p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_port));
  p.JumpEq32(kR2, htons(53), allow);
  if (ipv6) {
    p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip6[0]));
    p.JumpNe32(kR2, 0, lookup);
    p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip6[1]));
    p.JumpNe32(kR2, 0, lookup);
    p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip6[2]));
    p.JumpEq32(kR2, NetworkWord(0x0000ffff), v4);
    p.JumpNe32(kR2, 0, lookup);
    p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip6[3]));
    p.JumpEq32(kR2, NetworkWord(1), deny);
    p.JumpEq32(kR2, 0, deny);
    p.Jump(lookup);
    p.Bind(v4);
    p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip6[3]));
  } else {
    p.Bind(v4);
    p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip4));
  }
  p.And32(kR2, NetworkWord(0xff000000));
  p.JumpEq32(kR2, NetworkWord(0x7f000000), deny);
  p.JumpEq32(kR2, 0, deny);
  p.Bind(lookup);
  constexpr int16_t kKey = -24;  // the key's place on the stack: prefixlen, then 16 bytes
  p.StoreImm32(kR10, kKey, 128);
  for (int16_t i = 0; i < 4; ++i) {
    const auto at = static_cast<int16_t>(kKey + 4 + 4 * i);
    if (ipv6) {
      p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip6) + 4 * static_cast<size_t>(i));
      p.StoreReg32(kR10, at, kR2);
    } else if (i < 3) {
      p.StoreImm32(kR10, at, i == 2 ? NetworkWord(0x0000ffff) : 0);
    } else {
      p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip4));
      p.StoreReg32(kR10, at, kR2);
    }
  }
  p.LoadMapFd(kR1, host_addresses_map_fd);
  p.MovReg(kR2, kR10);
  p.AddImm(kR2, kKey);
  p.Call(BPF_FUNC_map_lookup_elem);
  p.JumpNeImm(kR0, 0, deny);
  p.Verdicts(allow, deny);
  return p.Finish();
}

Result<uint64_t> CurrentNetnsCookie() {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return ErrnoError("socket(AF_INET, SOCK_DGRAM) for the network namespace cookie");
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  if (::getsockopt(s.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
    return ErrnoError("getsockopt(SO_NETNS_COOKIE) (kernel >= 5.14)");
  }
  return cookie;
}

HostPrefix MakeHostPrefix(const std::array<uint8_t, 16>& addr, uint32_t prefixlen) {
  HostPrefix p;
  p.prefixlen = prefixlen > 128 ? 128 : prefixlen;
  for (uint32_t byte = 0; byte < 16; ++byte) {
    const uint32_t first_bit = byte * 8;
    if (first_bit + 8 <= p.prefixlen) {
      p.addr[byte] = addr[byte];
    } else if (first_bit < p.prefixlen) {
      p.addr[byte] = static_cast<uint8_t>(addr[byte] & (0xff00u >> (p.prefixlen - first_bit)));
    }
  }
  return p;
}

namespace {

// A prefix of an IPv4 address (network order) as the map keys it.
HostPrefix V4Prefix(const uint8_t* v4, uint32_t len) {
  std::array<uint8_t, 16> a{};
  a[10] = a[11] = 0xff;
  std::memcpy(&a[12], v4, 4);
  return MakeHostPrefix(a, 96 + len);
}

}  // namespace

Result<bool> ParseLocalRoutes(const uint8_t* buf, size_t len, std::vector<HostPrefix>* out) {
  size_t off = 0;
  while (off < len) {
    nlmsghdr h{};
    if (len - off < sizeof h) return PlainError("rtnetlink: a truncated message header");
    std::memcpy(&h, buf + off, sizeof h);
    if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > len - off) {
      return PlainError("rtnetlink: a message of " + std::to_string(h.nlmsg_len) + " bytes where " +
                        std::to_string(len - off) + " are left");
    }
    const uint8_t* body = buf + off + NLMSG_HDRLEN;
    const size_t body_len = h.nlmsg_len - NLMSG_HDRLEN;
    off += NLMSG_ALIGN(h.nlmsg_len);
    if ((h.nlmsg_flags & NLM_F_DUMP_INTR) != 0) {
      // The table changed while the kernel dumped it: what came may miss a route. EAGAIN: the
      // caller dumps again.
      return ErrnoError(EAGAIN, "rtnetlink: the route dump was interrupted by a change");
    }
    if (h.nlmsg_type == NLMSG_DONE) {
      // A dump that failed part way still ends with NLMSG_DONE, its error in the payload: what
      // came before it is not the whole table, and a map cut down to it would open the rest.
      int status = 0;
      if (body_len >= sizeof status) std::memcpy(&status, body, sizeof status);
      if (status < 0)
        return ErrnoError(-status, "rtnetlink: the local routing table's dump failed");
      return true;
    }
    if (h.nlmsg_type == NLMSG_ERROR) {
      nlmsgerr e{};
      if (body_len < sizeof e) return PlainError("rtnetlink: a truncated error reply");
      std::memcpy(&e, body, sizeof e);
      return ErrnoError(-e.error, "rtnetlink: dumping the local routing table");
    }
    if (h.nlmsg_type != RTM_NEWROUTE) continue;
    rtmsg rt{};
    if (body_len < sizeof rt) return PlainError("rtnetlink: a truncated route message");
    std::memcpy(&rt, body, sizeof rt);
    uint32_t table = rt.rtm_table;
    const uint8_t* dst = nullptr;
    size_t dst_len = 0;
    for (size_t at = NLMSG_ALIGN(sizeof rt); at < body_len;) {
      rtattr ra{};
      if (body_len - at < sizeof ra) return PlainError("rtnetlink: a truncated route attribute");
      std::memcpy(&ra, body + at, sizeof ra);
      if (ra.rta_len < sizeof ra || ra.rta_len > body_len - at) {
        return PlainError("rtnetlink: a route attribute of " + std::to_string(ra.rta_len) +
                          " bytes where " + std::to_string(body_len - at) + " are left");
      }
      const uint8_t* payload = body + at + RTA_LENGTH(0);
      const size_t payload_len = ra.rta_len - RTA_LENGTH(0);
      if (ra.rta_type == RTA_TABLE && payload_len == sizeof table) {
        std::memcpy(&table, payload, sizeof table);
      } else if (ra.rta_type == RTA_DST) {
        dst = payload;
        dst_len = payload_len;
      }
      at += RTA_ALIGN(ra.rta_len);
    }
    // A local route is an address the host answers for in whichever table it is (a VRF keeps
    // its devices' addresses in its own table); broadcast, anycast and multicast routes count
    // in the local table.
    if (rt.rtm_type != RTN_LOCAL &&
        (table != RT_TABLE_LOCAL || (rt.rtm_type != RTN_BROADCAST && rt.rtm_type != RTN_ANYCAST &&
                                     rt.rtm_type != RTN_MULTICAST))) {
      continue;
    }
    static constexpr uint8_t kZero[16] = {};
    if (rt.rtm_family == AF_INET) {
      if (rt.rtm_dst_len > 32 || (dst != nullptr && dst_len != 4) ||
          (dst == nullptr && rt.rtm_dst_len != 0)) {
        return PlainError("rtnetlink: an IPv4 route to a /" + std::to_string(rt.rtm_dst_len) +
                          " with a destination of " + std::to_string(dst_len) + " bytes");
      }
      out->push_back(V4Prefix(dst != nullptr ? dst : kZero, rt.rtm_dst_len));
    } else if (rt.rtm_family == AF_INET6) {
      if (rt.rtm_dst_len > 128 || (dst != nullptr && dst_len != 16) ||
          (dst == nullptr && rt.rtm_dst_len != 0)) {
        return PlainError("rtnetlink: an IPv6 route to a /" + std::to_string(rt.rtm_dst_len) +
                          " with a destination of " + std::to_string(dst_len) + " bytes");
      }
      std::array<uint8_t, 16> a{};
      std::memcpy(a.data(), dst != nullptr ? dst : kZero, 16);
      out->push_back(MakeHostPrefix(a, rt.rtm_dst_len));
    }
  }
  return false;
}

namespace {

// One RTM_GETROUTE dump of `family`'s routes in `table` (RT_TABLE_UNSPEC: every table) of type
// `type` (0: any), parsed into `out`. With NETLINK_GET_STRICT_CHK (>= 4.20) the kernel filters
// by table and type; ParseLocalRoutes filters as well.
Result<void> DumpRoutes(int sock, uint32_t seq, uint8_t family, uint8_t table, uint8_t type,
                        std::vector<uint8_t>& buf, std::vector<HostPrefix>* out) {
  struct {
    nlmsghdr h;
    rtmsg r;
  } req{};
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = RTM_GETROUTE;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = seq;
  req.r.rtm_family = family;
  req.r.rtm_table = table;
  req.r.rtm_type = type;
  if (::send(sock, &req, sizeof req, 0) != static_cast<ssize_t>(sizeof req)) {
    return ErrnoError("send(RTM_GETROUTE dump)");
  }
  for (bool done = false; !done;) {
    const ssize_t n = ::recv(sock, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("recv(RTM_GETROUTE dump)");
    if (n == 0) return PlainError("rtnetlink: the route dump ended without NLMSG_DONE");
    MP_TRY(done, ParseLocalRoutes(buf.data(), static_cast<size_t>(n), out));
  }
  return Ok();
}

}  // namespace

Result<std::vector<HostPrefix>> HostPrefixes() {
  std::vector<HostPrefix> prefixes;
  std::vector<uint8_t> buf(64 * 1024);
  // A dump a route change interrupted (NLM_F_DUMP_INTR) is taken again, on a new socket (the
  // rest of the interrupted one is not read); a host whose routes never hold still long enough
  // is an error, which fails the guard closed.
  for (int attempt = 1;; ++attempt) {
    UniqueFd s(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    if (!s) return ErrnoError("socket(AF_NETLINK, NETLINK_ROUTE) for the local routes");
    const int one = 1;
    (void)::setsockopt(s.get(), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one);
    prefixes.clear();
    uint32_t seq = 0;
    Result<void> dumped = Ok();
    for (const uint8_t family : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
      // The local table whole (its broadcast, anycast and multicast routes too), then the local
      // routes of every other table (VRFs).
      dumped = DumpRoutes(s.get(), ++seq, family, RT_TABLE_LOCAL, 0, buf, &prefixes);
      if (!dumped) break;
      dumped = DumpRoutes(s.get(), ++seq, family, RT_TABLE_UNSPEC, RTN_LOCAL, buf, &prefixes);
      if (!dumped) break;
    }
    if (dumped) break;
    if (dumped.error().errnum != EAGAIN || attempt == 5) {
      return std::move(dumped).error().Wrap("the host's local routes");
    }
  }
  const uint8_t all[4] = {255, 255, 255, 255}, multicast4[4] = {224, 0, 0, 0};
  prefixes.push_back(V4Prefix(all, 32));
  prefixes.push_back(V4Prefix(multicast4, 4));
  std::array<uint8_t, 16> multicast6{};
  multicast6[0] = 0xff;
  prefixes.push_back(MakeHostPrefix(multicast6, 8));
  std::sort(prefixes.begin(), prefixes.end());
  prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());
  return prefixes;
}

Result<std::unique_ptr<LoopbackGuard>> LoopbackGuard::Attach(int cgroup_dirfd) {
  MP_TRY(const uint64_t cookie, CurrentNetnsCookie());
  // Subscribed before the first read of the addresses: a change in between is still noticed.
  UniqueFd netlink(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE));
  if (!netlink) return ErrnoError("socket(AF_NETLINK, NETLINK_ROUTE)");
  sockaddr_nl nl{};
  nl.nl_family = AF_NETLINK;
  nl.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
  if (::bind(netlink.get(), reinterpret_cast<sockaddr*>(&nl), sizeof nl) != 0) {
    return ErrnoError("bind(NETLINK_ROUTE, the IPv4 and IPv6 address and route groups)");
  }
  bpf_attr create{};
  create.map_type = BPF_MAP_TYPE_LPM_TRIE;
  create.key_size = sizeof(HostPrefix);
  create.value_size = 1;
  // Room for two full sets and the fail-closed prefixes: a refresh adds the new set before it
  // deletes what is gone (a prefix kept is never unguarded), and fails closed on top of both.
  create.max_entries = 2 * kHostPrefixesMax + 8;
  create.map_flags = BPF_F_NO_PREALLOC;
  std::strncpy(create.map_name, "mp_host_addrs", sizeof create.map_name - 1);
  const long map_fd = Bpf(BPF_MAP_CREATE, &create);
  if (map_fd < 0) return ErrnoError("bpf(BPF_MAP_CREATE, LPM trie of the host's prefixes)");
  std::unique_ptr<LoopbackGuard> guard(
      new LoopbackGuard(UniqueFd(static_cast<int>(map_fd)), std::move(netlink)));
  MP_RETURN_IF_ERROR(guard->Refresh());
  for (const Hook& hook : kHooks) {
    MP_TRY(const UniqueFd prog,
           LoadProgram(hook, BuildLoopbackGuardProgram(hook.ipv6, cookie, guard->map_.get()),
                       kLoopbackGuardName));
    MP_RETURN_IF_ERROR(AttachReplacing(cgroup_dirfd, hook, prog, kLoopbackGuardName));
  }
  return guard;
}

Result<size_t> LoopbackGuard::Refresh() {
  auto r = RefreshOnce();
  if (!r) {
    if (auto closed = FailClosed(); !closed) {
      return r.error().Wrap("refresh failed, and so did failing closed (" +
                            closed.error().ToString() + ")");
    }
    return r;
  }
  // RefreshOnce deleted every prefix not in the table, the fail-closed ones among them.
  failed_closed_ = false;
  return r;
}

Result<void> LoopbackGuard::FailClosed() {
  const uint8_t present = 1;
  const std::array<uint8_t, 16> any{};
  std::array<uint8_t, 16> mapped{};
  mapped[10] = mapped[11] = 0xff;
  for (const HostPrefix& k : {MakeHostPrefix(any, 0), MakeHostPrefix(mapped, 96)}) {
    bpf_attr up{};
    up.map_fd = static_cast<uint32_t>(map_.get());
    up.key = reinterpret_cast<uint64_t>(&k);
    up.value = reinterpret_cast<uint64_t>(&present);
    up.flags = BPF_ANY;
    if (Bpf(BPF_MAP_UPDATE_ELEM, &up) != 0) {
      return ErrnoError("bpf(BPF_MAP_UPDATE_ELEM, the fail-closed prefix /" +
                        std::to_string(k.prefixlen) + ")");
    }
  }
  failed_closed_ = true;
  return Ok();
}

Result<size_t> LoopbackGuard::RefreshOnce() {
  // The notices only say "something changed": drain them (ENOBUFS, an overrun, says the same).
  char buf[8192];
  while (true) {
    const ssize_t n = ::recv(netlink_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0 || (n < 0 && (errno == EINTR || errno == ENOBUFS))) continue;
    if (n < 0 && errno != EAGAIN)
      return ErrnoError("recv(NETLINK_ROUTE address and route notices)");
    break;
  }
  if (test_failures_ > 0) {
    --test_failures_;
    return ErrnoError(EIO, "rtnetlink: a refresh made to fail by the test hook");
  }
  MP_TRY(const std::vector<HostPrefix> now, HostPrefixes());
  if (now.size() > kHostPrefixesMax) {
    return ErrnoError(ENOSPC, "the host has " + std::to_string(now.size()) +
                                  " local prefixes, more than the guard's map holds (" +
                                  std::to_string(kHostPrefixesMax) + ")");
  }
  const uint8_t present = 1;
  for (const HostPrefix& k : now) {  // add first: a prefix kept is never unguarded
    bpf_attr up{};
    up.map_fd = static_cast<uint32_t>(map_.get());
    up.key = reinterpret_cast<uint64_t>(&k);
    up.value = reinterpret_cast<uint64_t>(&present);
    up.flags = BPF_ANY;
    if (Bpf(BPF_MAP_UPDATE_ELEM, &up) != 0) {
      return ErrnoError("bpf(BPF_MAP_UPDATE_ELEM, the host's prefixes)");
    }
  }
  std::vector<HostPrefix> gone;
  HostPrefix key{}, next{};
  bool first = true;
  while (true) {
    bpf_attr it{};
    it.map_fd = static_cast<uint32_t>(map_.get());
    it.key = first ? 0 : reinterpret_cast<uint64_t>(&key);
    it.next_key = reinterpret_cast<uint64_t>(&next);
    if (Bpf(BPF_MAP_GET_NEXT_KEY, &it) != 0) {
      if (errno == ENOENT) break;
      return ErrnoError("bpf(BPF_MAP_GET_NEXT_KEY, the host's prefixes)");
    }
    first = false;
    key = next;
    if (!std::binary_search(now.begin(), now.end(), key)) gone.push_back(key);
  }
  for (const HostPrefix& k : gone) {
    bpf_attr del{};
    del.map_fd = static_cast<uint32_t>(map_.get());
    del.key = reinterpret_cast<uint64_t>(&k);
    if (Bpf(BPF_MAP_DELETE_ELEM, &del) != 0 && errno != ENOENT) {
      return ErrnoError("bpf(BPF_MAP_DELETE_ELEM, the host's prefixes)");
    }
  }
  return now.size();
}

std::chrono::milliseconds NextRefreshRetry(std::chrono::milliseconds previous) {
  if (previous.count() <= 0) return std::chrono::milliseconds(1000);
  return std::min(previous * 2, kRefreshRetryMax);
}

Result<int> DetachLoopbackGuard(int cgroup_dirfd) {
  int detached = 0;
  for (const Hook& hook : kHooks) {
    MP_TRY(const int n, DetachOurs(cgroup_dirfd, hook, kLoopbackGuardName, 0));
    detached += n;
  }
  return detached;
}

// The bind guard's program:
//
//   r6 = r1                           keep the context across the helper calls
//   call bpf_get_netns_cookie
//   r2 = <host cookie> (64-bit)
//   if r0 != r2 goto allow            a session's own namespace binds what it likes
//   *(u32 *)(r10 - 4) = 0             the key: the map's one entry
//   r1 = <rules map> (64-bit, BPF_PSEUDO_MAP_FD)
//   r2 = r10; r2 += -4
//   call bpf_map_lookup_elem          r0 = the BindGuardRules, or NULL
//   if r0 == 0 goto deny              no rules: refuse (fail closed)
//   w2 = ctx->user_port               network byte order in the low 16 bits
//   w2 = be16 w2                      host byte order
//   w2 &= 0xffff                      (bounds the verifier can see for the byte index below)
//   if w2 == 0 goto allow             the kernel picks an ephemeral port
//   w3 = rules->low
//   if w2 < w3 goto deny              below the ephemeral range: where services listen
//   w3 = rules->high
//   if w2 > w3 goto deny              above it, likewise
//   r3 = r2; r3 >>= 3                 the reserved bitmap's byte, 0..8191
//   r0 += r3
//   w3 = *(u8 *)(r0 + 8)              rules->reserved[port / 8]
//   w2 &= 7
//   w3 >>= w2; w3 &= 1                its bit port % 8
//   if w3 != 0 goto deny              a reserved port: a service's
// allow:
//   r0 = 1; exit
// deny:
//   r0 = 0; exit                      bind() fails with EPERM
std::vector<bpf_insn> BuildBindGuardProgram(uint64_t host_netns_cookie, int rules_map_fd) {
  Program p;
  const auto allow = p.NewLabel(), deny = p.NewLabel();
  p.MovReg(kR6, kR1);
  p.Call(BPF_FUNC_get_netns_cookie);
  p.LoadImm64(kR2, host_netns_cookie);
  p.JumpNeReg(kR0, kR2, allow);
  constexpr int16_t kKey = -4;
  p.StoreImm32(kR10, kKey, 0);
  p.LoadMapFd(kR1, rules_map_fd);
  p.MovReg(kR2, kR10);
  p.AddImm(kR2, kKey);
  p.Call(BPF_FUNC_map_lookup_elem);
  p.JumpEqImm(kR0, 0, deny);
  p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_port));
  p.FromBe16(kR2);
  p.And32(kR2, 0xffff);
  p.JumpEq32(kR2, 0, allow);
  p.LoadU32(kR3, kR0, offsetof(BindGuardRules, low));
  p.JumpLt32Reg(kR2, kR3, deny);
  p.LoadU32(kR3, kR0, offsetof(BindGuardRules, high));
  p.JumpGt32Reg(kR2, kR3, deny);
  p.MovReg(kR3, kR2);
  p.RshImm(kR3, 3);
  p.AddReg(kR0, kR3);
  p.LoadU8(kR3, kR0, offsetof(BindGuardRules, reserved));
  p.And32(kR2, 7);
  p.Rsh32Reg(kR3, kR2);
  p.And32(kR3, 1);
  p.JumpNe32(kR3, 0, deny);
  p.Verdicts(allow, deny);
  return p.Finish();
}

BindGuardRules MakeBindGuardRules(PortRange allowed, const std::vector<PortRange>& reserved) {
  BindGuardRules rules;
  rules.low = allowed.low;
  rules.high = allowed.high;
  for (const PortRange& r : reserved) {
    for (uint32_t port = r.low; port <= r.high; ++port) {
      rules.reserved[port / 8] =
          static_cast<uint8_t>(rules.reserved[port / 8] | (1u << (port % 8)));
    }
  }
  return rules;
}

size_t ReservedPortCount(const BindGuardRules& rules) {
  size_t n = 0;
  for (const uint8_t byte : rules.reserved) n += static_cast<size_t>(__builtin_popcount(byte));
  return n;
}

Result<BindGuardRules> HostBindGuardRules(const char* range_path, const char* reserved_path) {
  MP_TRY(const PortRange range, common::ReadEphemeralPortRange(range_path));
  MP_TRY(const std::vector<PortRange> reserved, common::ReadReservedPorts(reserved_path));
  return MakeBindGuardRules(range, reserved);
}

namespace {

Result<void> WriteRules(int map_fd, const BindGuardRules& rules) {
  const uint32_t key = 0;
  bpf_attr up{};
  up.map_fd = static_cast<uint32_t>(map_fd);
  up.key = reinterpret_cast<uint64_t>(&key);
  up.value = reinterpret_cast<uint64_t>(&rules);
  up.flags = BPF_ANY;
  if (Bpf(BPF_MAP_UPDATE_ELEM, &up) != 0) {
    return ErrnoError("bpf(BPF_MAP_UPDATE_ELEM, the bind guard's rules)");
  }
  return Ok();
}

}  // namespace

Result<std::unique_ptr<BindGuard>> BindGuard::Attach(int cgroup_dirfd,
                                                     const BindGuardRules& rules) {
  MP_TRY(const uint64_t cookie, CurrentNetnsCookie());
  bpf_attr create{};
  create.map_type = BPF_MAP_TYPE_ARRAY;
  create.key_size = sizeof(uint32_t);
  create.value_size = sizeof(BindGuardRules);
  create.max_entries = 1;
  std::strncpy(create.map_name, "mp_bind_rules", sizeof create.map_name - 1);
  const long map_fd = Bpf(BPF_MAP_CREATE, &create);
  if (map_fd < 0) return ErrnoError("bpf(BPF_MAP_CREATE, array of the bind guard's rules)");
  std::unique_ptr<BindGuard> guard(new BindGuard(UniqueFd(static_cast<int>(map_fd)), rules));
  // Written before the program exists: an array's entry starts zeroed, which would refuse
  // every port but 0 ([0, 0]).
  MP_RETURN_IF_ERROR(WriteRules(guard->map_.get(), rules));
  const std::vector<bpf_insn> insns = BuildBindGuardProgram(cookie, guard->map_.get());
  for (const Hook& hook : kBindHooks) {
    MP_TRY(const UniqueFd prog, LoadProgram(hook, insns, kBindGuardName));
    MP_RETURN_IF_ERROR(AttachReplacing(cgroup_dirfd, hook, prog, kBindGuardName));
  }
  return guard;
}

Result<bool> BindGuard::Update(const BindGuardRules& rules) {
  if (rules == rules_) return false;
  MP_RETURN_IF_ERROR(WriteRules(map_.get(), rules));
  rules_ = rules;
  return true;
}

Result<int> DetachBindGuard(int cgroup_dirfd) {
  int detached = 0;
  for (const Hook& hook : kBindHooks) {
    MP_TRY(const int n, DetachOurs(cgroup_dirfd, hook, kBindGuardName, 0));
    detached += n;
  }
  return detached;
}

}  // namespace mp::sandbox

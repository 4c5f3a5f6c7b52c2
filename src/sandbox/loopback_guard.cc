// The loopback guard's program, written out instruction by instruction, and its loading and
// attaching with bpf(2). The program (the IPv6 variant; the IPv4 one checks user_ip4 only):
//
//   r6 = r1                           keep the context (bpf_sock_addr) across the helper call
//   call bpf_get_netns_cookie         r0 = cookie of the socket's network namespace
//   r2 = <host cookie> (64-bit)       read by the supervisor at start (SO_NETNS_COOKIE)
//   if r0 != r2 goto allow            a session's own namespace keeps its own loopback
//   w2 = ctx->user_port               port 53 stays open: a resolver on loopback
//   if w2 == htons(53) goto allow
//   w2 = ctx->user_ip6[0]             ::/96 and ::ffff:0:0/96 have three zero words...
//   if w2 != 0 goto allow
//   w2 = ctx->user_ip6[1]
//   if w2 != 0 goto allow
//   w2 = ctx->user_ip6[2]
//   if w2 == htonl(0xffff) goto v4    ...except the mapped prefix's third word
//   if w2 != 0 goto allow
//   w2 = ctx->user_ip6[3]
//   if w2 == htonl(1) goto deny       ::1
//   if w2 == 0 goto deny              :: (connect to the unspecified address reaches loopback)
//   goto allow
// v4:
//   w2 = ctx->user_ip6[3]             the mapped IPv4 address (IPv4 variant: ctx->user_ip4)
//   w2 &= <first octet's byte>        network byte order: the first octet
//   if w2 == <127> goto deny          127.0.0.0/8
//   if w2 == 0 goto deny              0.0.0.0/8 (0.0.0.0 reaches loopback too)
// allow:
//   r0 = 1; exit                      the kernel goes on
// deny:
//   r0 = 0; exit                      connect()/sendmsg() fail with EPERM
//
// Compares of 32-bit fields use the JMP32 class (kernel >= 5.1) so that constants with the top
// bit set (htonl(0xffff) on little-endian) are not sign-extended. Supervisor only.
#include "sandbox/loopback_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "common/unique_fd.h"

namespace mp::sandbox {
namespace {

// --- A tiny assembler: one function per instruction form, jumps to labels resolved at the end.

constexpr uint8_t kR0 = BPF_REG_0, kR1 = BPF_REG_1, kR2 = BPF_REG_2, kR6 = BPF_REG_6;

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
  // if w_dst == imm goto l / if w_dst != imm goto l (32-bit)
  void JumpEq32(uint8_t dst, uint32_t imm, Label l) {
    EmitJump(BPF_JMP32 | BPF_JEQ | BPF_K, dst, 0, static_cast<int32_t>(imm), l);
  }
  void JumpNe32(uint8_t dst, uint32_t imm, Label l) {
    EmitJump(BPF_JMP32 | BPF_JNE | BPF_K, dst, 0, static_cast<int32_t>(imm), l);
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

Result<UniqueFd> LoadProgram(const Hook& hook, uint64_t cookie) {
  const std::vector<bpf_insn> insns = BuildLoopbackGuardProgram(hook.ipv6, cookie);
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
  std::strncpy(attr.prog_name, kLoopbackGuardName, sizeof attr.prog_name - 1);
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

// Detaches the programs named kLoopbackGuardName at `hook`, except `keep_id`.
Result<int> DetachOurs(int cgroup_dirfd, const Hook& hook, uint32_t keep_id) {
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
    if (info.name != kLoopbackGuardName) continue;
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

}  // namespace

std::vector<bpf_insn> BuildLoopbackGuardProgram(bool ipv6, uint64_t host_netns_cookie) {
  Program p;
  const auto allow = p.NewLabel(), deny = p.NewLabel(), v4 = p.NewLabel();
  p.MovReg(kR6, kR1);
  p.Call(BPF_FUNC_get_netns_cookie);
  p.LoadImm64(kR2, host_netns_cookie);
  p.JumpNeReg(kR0, kR2, allow);
  p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_port));
  p.JumpEq32(kR2, htons(53), allow);
  if (ipv6) {
    p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip6[0]));
    p.JumpNe32(kR2, 0, allow);
    p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip6[1]));
    p.JumpNe32(kR2, 0, allow);
    p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip6[2]));
    p.JumpEq32(kR2, NetworkWord(0x0000ffff), v4);
    p.JumpNe32(kR2, 0, allow);
    p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip6[3]));
    p.JumpEq32(kR2, NetworkWord(1), deny);
    p.JumpEq32(kR2, 0, deny);
    p.Jump(allow);
    p.Bind(v4);
    p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip6[3]));
  } else {
    p.Bind(v4);
    p.LoadU32(kR2, kR6, offsetof(bpf_sock_addr, user_ip4));
  }
  p.And32(kR2, NetworkWord(0xff000000));
  p.JumpEq32(kR2, NetworkWord(0x7f000000), deny);
  p.JumpEq32(kR2, 0, deny);
  p.Bind(allow);
  p.MovImm(kR0, 1);
  p.Exit();
  p.Bind(deny);
  p.MovImm(kR0, 0);
  p.Exit();
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

Result<void> AttachLoopbackGuard(int cgroup_dirfd) {
  MP_TRY(const uint64_t cookie, CurrentNetnsCookie());
  for (const Hook& hook : kHooks) {
    MP_TRY(UniqueFd prog, LoadProgram(hook, cookie));
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
    MP_RETURN_IF_ERROR(DetachOurs(cgroup_dirfd, hook, info.id));
  }
  return Ok();
}

Result<int> DetachLoopbackGuard(int cgroup_dirfd) {
  int detached = 0;
  for (const Hook& hook : kHooks) {
    MP_TRY(const int n, DetachOurs(cgroup_dirfd, hook, 0));
    detached += n;
  }
  return detached;
}

}  // namespace mp::sandbox

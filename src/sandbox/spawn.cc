#include "sandbox/spawn.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <pthread.h>
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "common/scope_guard.h"
#include "sandbox/child.h"
#include "sandbox/idmap.h"
#include "sandbox/mounts.h"

namespace mp::sandbox {
namespace {

// The staging directory the child covers with a tmpfs in its own mount
// namespace; the host never sees that tmpfs.
constexpr char kStagingDir[] = "/tmp";
constexpr char kStagedRoot[] = "/tmp/root";
// Where the tmpfs of a private home's upper layer is mounted in the staging tmpfs.
constexpr char kHomeLayer[] = "/tmp/home";

// The kernel's highest capability number: fixed while it runs, so read once per process.
int LastCap() {
  static const int last_cap = [] {
    std::ifstream f("/proc/sys/kernel/cap_last_cap");
    int v = 40;
    if (!(f >> v)) v = 63;  // drop every possible bit if we cannot tell
    return v;
  }();
  return last_cap;
}

// Everything the ChildPlan points into; lives on the parent's stack during Spawn().
struct PlanStorage {
  std::vector<std::string> argv_s, env_s;
  std::vector<char*> argv, envp;
  std::vector<PlanBind> binds;
  std::vector<PlanHide> hides;
  std::vector<RootEntry> root_entries_s;
  std::vector<PlanRootEntry> root_entries;
  std::vector<PlanRlimit> rlimits;
};

Result<void> Validate(const SpawnRequest& r) {
  if (r.argv.empty() || r.argv[0].empty()) return PlainError("command is empty");
  for (const auto& a : r.argv) {
    if (a.find('\0') != std::string::npos) return PlainError("an argument contains a NUL byte");
  }
  for (const auto& e : r.env) {
    const size_t eq = e.find('=');
    if (eq == 0 || eq == std::string::npos || e.find('\0') != std::string::npos) {
      return PlainError("environment entry \"" + e.substr(0, 64) + "\" is not NAME=value");
    }
  }
  if (r.uid == 0 && !r.allow_root) return PlainError("run-as uid 0 is refused (allow_root is off)");
  if (r.gid == 0 && !r.allow_root) return PlainError("run-as gid 0 is refused (allow_root is off)");
  if (r.binds.size() > kMaxBinds) return PlainError("too many binds");
  if (r.hide.size() > kMaxHides) return PlainError("too many hidden paths");
  bool workspace_writable = r.workspace.empty();
  if (r.idmap_owner) {
    if (r.idmap_owner->uid == r.uid || r.idmap_owner->gid == r.gid) {
      return PlainError("the idmap owner's ids (" + std::to_string(r.idmap_owner->uid) + ":" +
                        std::to_string(r.idmap_owner->gid) + ") equal the session's: nothing " +
                        "to map");
    }
    if ((r.idmap_owner->uid == 0 || r.idmap_owner->gid == 0) && !r.allow_root) {
      return PlainError("idmap owner uid or gid 0 is refused (allow_root is off)");
    }
  }
  for (const auto& b : r.binds) {
    if (b.idmap && !r.idmap_owner) {
      return PlainError("bind \"" + b.source + "\" is idmapped but the request has no owner");
    }
    MP_RETURN_IF_ERROR(CheckHostPathHasNoSymlink(b.source, "mount source"));
    MP_RETURN_IF_ERROR(CheckPathSyntax(b.target, "mount target"));
    if (b.target == "/" || PathIsWithin(b.target, "/proc") || PathIsWithin(b.target, "/dev")) {
      return PlainError("mount target \"" + b.target + "\" is reserved");
    }
    if (b.mode == BindMode::kReadWrite && PathIsWithin(r.workspace, b.target)) {
      workspace_writable = true;
    }
  }
  if (r.oom_score_adj && (*r.oom_score_adj < -1000 || *r.oom_score_adj > 1000)) {
    return PlainError("oom_score_adj " + std::to_string(*r.oom_score_adj) +
                      " is outside -1000..1000");
  }
  if (!r.workspace.empty()) {
    MP_RETURN_IF_ERROR(CheckPathSyntax(r.workspace, "workspace"));
    if (!workspace_writable && !r.unsafe.keep_host_filesystem) {
      return PlainError("workspace \"" + r.workspace + "\" is not inside a read-write bind");
    }
  }
  for (const auto& h : r.hide) MP_RETURN_IF_ERROR(CheckPathSyntax(h, "hidden path"));
  if (r.home) {
    MP_RETURN_IF_ERROR(CheckHostPathHasNoSymlink(r.home->seed, "home seed"));
    MP_RETURN_IF_ERROR(CheckPathSyntax(r.home->target, "home target"));
    if (r.home->target == "/" || PathIsWithin(r.home->target, "/proc") ||
        PathIsWithin(r.home->target, "/dev") || PathIsWithin(r.home->target, "/tmp")) {
      return PlainError("home target \"" + r.home->target + "\" is reserved");
    }
    if (r.home->max_bytes < 4096) return PlainError("home max_bytes below one page");
    if (r.unsafe.keep_host_filesystem) {
      return PlainError("a private home needs the sandbox's view (keep_host_filesystem is on)");
    }
  }
  if (r.hostname.size() > 64) return PlainError("hostname longer than 64 bytes");
  if (!r.task_file.empty() && r.unsafe.keep_host_filesystem) {
    return PlainError("a task file needs the sandbox's private /tmp (keep_host_filesystem is on)");
  }
  if (r.task_file.size() > r.tmp_size_bytes) {
    return PlainError("task file of " + std::to_string(r.task_file.size()) +
                      " bytes does not fit the private /tmp of " +
                      std::to_string(r.tmp_size_bytes) + " bytes");
  }
  return Ok();
}

Result<void> ApplyLimits(const CgroupLeaf& leaf, const CgroupLimits& l) {
  // One OOM kill takes the whole session, never half of it: whether the session's own cap,
  // the sessions' aggregate cap (ApplySessionsMemoryCap) or the host ran out.
  MP_RETURN_IF_ERROR(leaf.Write("memory.oom.group", "1"));
  if (l.memory_max_bytes) {
    MP_RETURN_IF_ERROR(leaf.Write("memory.max", std::to_string(*l.memory_max_bytes)));
  }
  if (l.memory_swap_max_bytes) {
    MP_RETURN_IF_ERROR(leaf.Write("memory.swap.max", std::to_string(*l.memory_swap_max_bytes)));
  }
  if (l.pids_max) MP_RETURN_IF_ERROR(leaf.Write("pids.max", std::to_string(*l.pids_max)));
  if (l.cpu_max) MP_RETURN_IF_ERROR(leaf.Write("cpu.max", *l.cpu_max));
  return Ok();
}

Result<std::pair<UniqueFd, UniqueFd>> OpenPty(unsigned short rows, unsigned short cols) {
  UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master) return ErrnoError("posix_openpt");
  if (::grantpt(master.get()) < 0) return ErrnoError("grantpt");
  if (::unlockpt(master.get()) < 0) return ErrnoError("unlockpt");
  char name[128];
  if (::ptsname_r(master.get(), name, sizeof name) != 0) return ErrnoError("ptsname_r");
  UniqueFd slave(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave) return ErrnoError(std::string("open(") + name + ")");
  struct winsize ws {};
  ws.ws_row = rows;
  ws.ws_col = cols;
  if (::ioctl(master.get(), TIOCSWINSZ, &ws) < 0) return ErrnoError("ioctl(TIOCSWINSZ)");
  return std::pair<UniqueFd, UniqueFd>(std::move(master), std::move(slave));
}

// /proc/sys/fs/pipe-max-size, or 0 when it cannot be read.
size_t PipeMaxSize() {
  UniqueFd fd(::open("/proc/sys/fs/pipe-max-size", O_RDONLY | O_CLOEXEC));
  if (!fd) return 0;
  char buf[32] = {};
  const ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return 0;
  return static_cast<size_t>(std::strtoull(buf, nullptr, 10));
}

}  // namespace

Result<size_t> ResizePipe(int fd, size_t bytes) {
  const size_t asked = std::min<size_t>(bytes, INT_MAX);
  int got = ::fcntl(fd, F_SETPIPE_SZ, static_cast<int>(asked));
  if (got < 0 && errno == EPERM) {
    // Above pipe-max-size without CAP_SYS_RESOURCE (or over the user's pipe page quota,
    // pipe-user-pages-*): the largest size an unprivileged process may set.
    const size_t max = PipeMaxSize();
    if (max > 0 && max < asked) {
      got = ::fcntl(fd, F_SETPIPE_SZ, static_cast<int>(max));
    } else {
      errno = EPERM;
    }
  }
  if (got < 0) {
    return ErrnoError("fcntl(F_SETPIPE_SZ, " + std::to_string(asked) + ")");
  }
  return static_cast<size_t>(got);
}

std::vector<RlimitSpec> DefaultRlimits() {
  return {
      {RLIMIT_CORE, 0, 0},
      {RLIMIT_NOFILE, 4096, 4096},
      {RLIMIT_NPROC, 4096, 4096},
      {RLIMIT_FSIZE, 8ull << 30, 8ull << 30},
  };
}

Result<PendingSpawn> StartSpawn(const CgroupRoot& root, const std::string& leaf_name,
                                const SpawnRequest& req) {
  MP_RETURN_IF_ERROR(Validate(req));

  PlanStorage st;
  st.argv_s = req.argv;
  st.env_s = req.env;
  for (auto& a : st.argv_s) st.argv.push_back(a.data());
  st.argv.push_back(nullptr);
  for (auto& e : st.env_s) st.envp.push_back(e.data());
  st.envp.push_back(nullptr);
  for (const auto& b : req.binds) {
    st.binds.push_back({b.source.c_str(), b.target.c_str(), b.mode, b.idmap});
  }
  // The idmapped binds' user namespace, and a check that each can be idmapped at all: a file
  // system that cannot is refused here, by name, not with the child's bare EINVAL.
  UniqueFd idmap_userns;
  if (req.idmap_owner && !req.unsafe.keep_host_filesystem) {
    for (const auto& b : req.binds) {
      if (!b.idmap) continue;
      if (!idmap_userns) {
        MP_TRY(idmap_userns,
               MakeIdmapUserns({req.idmap_owner->uid, req.idmap_owner->gid, req.uid, req.gid}));
      }
      MP_RETURN_IF_ERROR(CheckIdmappable(b.source, idmap_userns.get()));
    }
    if (req.home && req.home->idmap) {
      if (!idmap_userns) {
        MP_TRY(idmap_userns,
               MakeIdmapUserns({req.idmap_owner->uid, req.idmap_owner->gid, req.uid, req.gid}));
      }
      MP_RETURN_IF_ERROR(CheckIdmappable(req.home->seed, idmap_userns.get()));
    }
  }
  for (const auto& h : req.hide) {
    // A directory gets an empty tmpfs, anything else /dev/null; decided on the host.
    struct stat sb {};
    const bool is_dir = ::lstat(h.c_str(), &sb) == 0 && S_ISDIR(sb.st_mode);
    st.hides.push_back({h.c_str(), is_dir});
  }
  if (!req.unsafe.keep_host_filesystem && !req.unsafe.host_root_view) {
    MP_TRY(st.root_entries_s, ListViewRootEntries());
    if (st.root_entries_s.size() > kMaxRootEntries) {
      return PlainError("the host's root has more than " + std::to_string(kMaxRootEntries) +
                        " entries the view shows (usr, bin, sbin, etc, opt, lib*)");
    }
    for (const auto& e : st.root_entries_s) {
      st.root_entries.push_back({e.name.c_str(), e.link ? e.link->c_str() : nullptr});
    }
  }
  std::vector<RlimitSpec> rl = DefaultRlimits();
  for (const auto& r : req.rlimits) {
    bool replaced = false;
    for (auto& d : rl) {
      if (d.resource == r.resource) {
        d = r;
        replaced = true;
      }
    }
    if (!replaced) rl.push_back(r);
  }
  if (rl.size() > kMaxRlimits) return PlainError("too many rlimits");
  for (const auto& r : rl) {
    st.rlimits.push_back({r.resource, {static_cast<rlim_t>(r.soft), static_cast<rlim_t>(r.hard)}});
  }

  MP_TRY(CgroupLeaf leaf, CgroupLeaf::Create(root, leaf_name));
  ScopeGuard remove_leaf([&] { (void)FinishLeaf(leaf, std::chrono::seconds(5)); });
  if (auto r = ApplyLimits(leaf, req.limits); !r) return std::move(r).error().Wrap("cgroup limits");

  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
    return ErrnoError("socketpair(spawn handshake)");
  }
  UniqueFd parent_sock(sp[0]), child_sock(sp[1]);

  SpawnedChild out{
      PidFd(),   CgroupLeaf(std::move(leaf)), UniqueFd(), UniqueFd(), UniqueFd(), UniqueFd(),
      UniqueFd()};
  remove_leaf.Dismiss();
  ScopeGuard remove_out_leaf([&] { (void)FinishLeaf(out.leaf, std::chrono::seconds(5)); });

  UniqueFd child_in, child_out, child_err;
  switch (req.stdio) {
    case StdioMode::kPipes: {
      MP_TRY(auto in, MakePipe());
      MP_TRY(auto o, MakePipe());
      MP_TRY(auto e, MakePipe());
      child_in = std::move(in.first);
      out.stdin_write = std::move(in.second);
      out.stdout_read = std::move(o.first);
      child_out = std::move(o.second);
      out.stderr_read = std::move(e.first);
      child_err = std::move(e.second);
      if (req.output_pipe_bytes > 0) {
        for (const auto& [fd, name] : {std::pair{out.stdout_read.get(), "stdout"},
                                       std::pair{out.stderr_read.get(), "stderr"}}) {
          auto size = ResizePipe(fd, req.output_pipe_bytes);
          if (!size) {
            out.notes.push_back(std::string(name) + " pipe keeps the kernel's default size: " +
                                size.error().ToString());
          } else if (*size < req.output_pipe_bytes) {
            out.notes.push_back(std::string(name) + " pipe holds " + std::to_string(*size) +
                                " bytes, not the " + std::to_string(req.output_pipe_bytes) +
                                " asked for (/proc/sys/fs/pipe-max-size)");
          }
        }
      }
      break;
    }
    case StdioMode::kPty: {
      MP_TRY(auto pty, OpenPty(req.pty_rows, req.pty_cols));
      out.pty_master = std::move(pty.first);
      child_in = std::move(pty.second);
      break;
    }
    case StdioMode::kInherit:
      break;
  }

  ChildPlan plan{};
  plan.file = st.argv[0];
  plan.argv = st.argv.data();
  plan.envp = st.envp.data();
  plan.search_path = req.search_path.c_str();
  plan.isolate_filesystem = !req.unsafe.keep_host_filesystem;
  plan.staging_dir = kStagingDir;
  plan.staged_root = kStagedRoot;
  plan.binds = st.binds.data();
  plan.bind_count = st.binds.size();
  plan.idmap_userns_fd = idmap_userns ? idmap_userns.get() : -1;
  plan.pty_max = req.pty_max;
  plan.hides = st.hides.data();
  plan.hide_count = st.hides.size();
  plan.root_entries = st.root_entries.data();
  plan.root_entry_count = st.root_entries.size();
  plan.host_root_view = req.unsafe.host_root_view;
  plan.home_seed = req.home ? req.home->seed.c_str() : nullptr;
  plan.home_target = req.home ? req.home->target.c_str() : nullptr;
  plan.home_layer = kHomeLayer;
  plan.home_max_bytes = req.home ? req.home->max_bytes : 0;
  plan.home_idmap = req.home && req.home->idmap && idmap_userns;
  plan.workspace = req.workspace.empty() ? nullptr : req.workspace.c_str();
  plan.tmp_size_bytes = req.tmp_size_bytes;
  plan.task_file_data = req.task_file.empty() ? nullptr : req.task_file.data();
  plan.task_file_bytes = req.task_file.size();
  plan.hostname = req.hostname.c_str();
  plan.netns_fd = req.network == NetworkMode::kHost ? -1 : req.netns_fd;
  plan.loopback_up = req.network != NetworkMode::kHost && plan.netns_fd < 0;
  plan.rlimits = st.rlimits.data();
  plan.rlimit_count = st.rlimits.size();
  plan.change_ids = !req.unsafe.keep_ids;
  plan.uid = req.uid;
  plan.gid = req.gid;
  plan.last_cap = LastCap();
  plan.drop_capabilities = !req.unsafe.keep_capabilities;
  plan.no_new_privs = !req.unsafe.no_new_privs_off;
  plan.seccomp = req.seccomp;
  plan.set_oom_score_adj = req.oom_score_adj.has_value();
  plan.oom_score_adj = req.oom_score_adj.value_or(0);
  switch (req.stdio) {
    case StdioMode::kPipes:
      plan.stdin_fd = child_in.get();
      plan.stdout_fd = child_out.get();
      plan.stderr_fd = child_err.get();
      break;
    case StdioMode::kPty:
      plan.stdin_fd = plan.stdout_fd = plan.stderr_fd = child_in.get();
      plan.pty = true;
      break;
    case StdioMode::kInherit:
      plan.stdin_fd = 0;
      plan.stdout_fd = 1;
      plan.stderr_fd = 2;
      break;
  }
  plan.report_fd = child_sock.get();
  plan.wait_for_go = false;
  plan.stall_before_start_report = req.stall_before_start_report;
  plan.outlive_parent = req.outlive_supervisor;
  plan.test_fail_step = static_cast<uint32_t>(req.test_fail_step);
  UniqueFd self_pidfd(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0)));
  if (!self_pidfd) return ErrnoError("pidfd_open(self)");
  plan.parent_pidfd = self_pidfd.get();

  uint64_t flags = CLONE_PIDFD | CLONE_INTO_CGROUP | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  if (!req.unsafe.share_cgroup_namespace) flags |= CLONE_NEWCGROUP;
  if (!req.unsafe.share_pid_namespace) flags |= CLONE_NEWPID;
  if (req.network != NetworkMode::kHost && plan.netns_fd < 0) flags |= CLONE_NEWNET;
  int pidfd = -1;
  struct clone_args args {};
  args.flags = flags;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(out.leaf.dirfd());

  // clone3 has no glibc wrapper in 2.36. The child runs on a copy of this
  // stack; RunChild never returns.
  // No signal handler of the supervisor may run in the child before it resets
  // them: block everything across the clone; CLONE_CLEAR_SIGHAND resets the
  // handlers in the child.
  args.flags |= CLONE_CLEAR_SIGHAND;
  sigset_t all, saved;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &saved);
  const long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) RunChild(plan);
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  self_pidfd.Reset();
  if (pid < 0) {
    const int e = clone_errno;
    if (e == ENOSYS || e == E2BIG) {
      return ErrnoError(e, "clone3(CLONE_INTO_CGROUP): this kernel is too old (needs Linux 5.7)");
    }
    return ErrnoError(e, "clone3");
  }
  out.init = PidFd(static_cast<pid_t>(pid), UniqueFd(pidfd));
  child_sock.Reset();
  idmap_userns.Reset();
  child_in.Reset();
  child_out.Reset();
  child_err.Reset();

  out.report = std::move(parent_sock);
  remove_out_leaf.Dismiss();
  return PendingSpawn{std::move(out), ChildStep::kNone};
}

Result<HandshakeState> PollHandshake(PendingSpawn& pending) {
  for (;;) {
    SpawnReport r{};
    ssize_t n;
    do {
      n = ::recv(pending.child.report.get(), &r, sizeof r, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return HandshakeState::kPending;
    if (n < 0) return ErrnoError("recv(spawn handshake)");
    if (n == 0) {
      return PlainError(std::string("sandbox init died during setup (last step begun: ") +
                        ChildStepName(pending.last_step) + ")");
    }
    if (n != static_cast<ssize_t>(sizeof r)) {
      return PlainError("spawn handshake: short report (" + std::to_string(n) + " bytes)");
    }
    switch (r.kind) {
      case SpawnReport::kProgress:
        pending.last_step = static_cast<ChildStep>(r.step);
        continue;
      case SpawnReport::kStarted:
        return HandshakeState::kStarted;
      case SpawnReport::kFailed: {
        r.detail[sizeof r.detail - 1] = '\0';
        std::string what = ChildStepName(static_cast<ChildStep>(r.step));
        if (r.detail[0] != '\0') what += std::string(" ") + r.detail;
        return ErrnoError(r.errnum, what);
      }
      default:
        return PlainError("spawn handshake: unexpected report kind " + std::to_string(r.kind));
    }
  }
}

Error SpawnTimeoutError(const PendingSpawn& pending, std::chrono::milliseconds timeout) {
  return PlainError("sandbox setup did not finish within " + std::to_string(timeout.count()) +
                    " ms (stalled in step: " + ChildStepName(pending.last_step) + ")");
}

void AbortSpawn(SpawnedChild& child, std::chrono::milliseconds timeout) {
  (void)child.leaf.Kill();
  // SIGKILL reaches init at once, unless a setup step sleeps uninterruptibly (a hung mount):
  // then init dies when that syscall returns. Reap it only once it has exited.
  struct pollfd pfd = {child.init.fd(), POLLIN, 0};
  if (::poll(&pfd, 1, static_cast<int>(timeout.count())) > 0) (void)child.init.Wait();
}

Result<SpawnedChild> Spawn(const CgroupRoot& root, const std::string& leaf_name,
                           const SpawnRequest& req) {
  MP_TRY(PendingSpawn pending, StartSpawn(root, leaf_name, req));
  auto fail = [&](Error e) -> Error {
    AbortSpawn(pending.child, std::chrono::seconds(5));
    (void)FinishLeaf(pending.child.leaf, std::chrono::seconds(5));
    return e;
  };
  const auto deadline = std::chrono::steady_clock::now() + req.start_timeout;
  for (;;) {
    auto state = PollHandshake(pending);
    if (!state) return fail(std::move(state).error());
    if (*state == HandshakeState::kStarted) return std::move(pending.child);
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return fail(SpawnTimeoutError(pending, req.start_timeout));
    struct pollfd pfd = {pending.child.report.get(), POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      return fail(ErrnoError("poll(spawn handshake)"));
    }
  }
}

Result<std::optional<ExitReport>> ReadExitReport(int report_fd) {
  SpawnReport r{};
  ssize_t n;
  do {
    // MSG_TRUNC: the record's real length, so a longer record (another format) is refused.
    n = ::recv(report_fd, &r, sizeof r, MSG_DONTWAIT | MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::optional<ExitReport>();
    return ErrnoError("recv(exit report)");
  }
  if (n == 0) return std::optional<ExitReport>();  // init closed the socket without a report
  if (n != static_cast<ssize_t>(sizeof r)) {
    return PlainError("exit report of " + std::to_string(n) + " bytes, expected " +
                      std::to_string(sizeof r) + " (written by another version of monkeyproofd)");
  }
  if (r.kind != SpawnReport::kExited) {
    return PlainError("exit report: unexpected report kind " + std::to_string(r.kind));
  }
  return std::optional<ExitReport>(ExitReport{DecodeWaitStatus(r.status), r.exited_ms});
}

Result<std::optional<WaitStatus>> ReadExitReport(const SpawnedChild& child) {
  MP_TRY(std::optional<ExitReport> report, ReadExitReport(child.report.get()));
  if (!report) return std::optional<WaitStatus>();
  return std::optional<WaitStatus>(report->status);
}

std::optional<WaitStatus> CommandEnd(const Result<std::optional<ExitReport>>& report,
                                     const Result<std::optional<WaitStatus>>& init_status) {
  if (report && report->has_value()) return (*report)->status;
  if (init_status && init_status->has_value()) return **init_status;
  return std::nullopt;
}

Result<bool> LeafEmptied(CgroupLeaf& leaf, CgroupStats* stats) {
  MP_TRY(bool populated, leaf.Populated());
  if (populated) return false;
  MP_TRY(*stats, leaf.Stats());
  MP_RETURN_IF_ERROR(leaf.Remove());
  return true;
}

Result<CgroupStats> FinishLeaf(CgroupLeaf& leaf, std::chrono::milliseconds timeout) {
  MP_RETURN_IF_ERROR(leaf.Kill());
  MP_TRY(UniqueFd events, leaf.OpenEventFile("cgroup.events"));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    MP_TRY(bool populated, leaf.Populated());
    if (!populated) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return PlainError("cgroup \"" + leaf.name() + "\" still populated after kill");
    }
    // cgroup.events raises POLLPRI when "populated" changes.
    struct pollfd pfd = {events.get(), POLLPRI, 0};
    (void)::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
  }
  MP_TRY(CgroupStats stats, leaf.Stats());
  MP_RETURN_IF_ERROR(leaf.Remove());
  return stats;
}

}  // namespace mp::sandbox

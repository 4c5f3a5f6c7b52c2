// Spawn: one sandboxed command in its own cgroup v2 leaf and namespaces.
// Supervisor side. StartSpawn() validates the request, creates and limits the
// leaf, prepares the ChildPlan and clones with clone3(CLONE_PIDFD |
// CLONE_INTO_CGROUP | CLONE_NEW*); it never waits for the child. The child
// reports over the handshake socket the steps it begins, then "started" once
// the command's execve succeeded, or the step that failed with its errno:
// PollHandshake() reads what has arrived without blocking, so an event loop
// can wait for the socket and a deadline. Spawn() is the blocking sequence for
// one-shot callers. Not thread-safe; call from one thread.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "common/vocabulary.h"
#include "sandbox/cgroup.h"
#include "sandbox/child_plan.h"
#include "sandbox/pidfd.h"

namespace mp::sandbox {

// kNone and kAllowlist: a network namespace of the session's own, loopback only; kHost: the
// supervisor's.
using NetworkMode = common::NetworkMode;

inline constexpr size_t kDefaultOutputPipeBytes = size_t{1} << 20;  // 1 MiB

enum class StdioMode {
  kPipes,    // stdin, stdout, stderr are pipes; the parent holds the other ends
  kPty,      // one PTY: the command's controlling terminal; the parent holds the master
  kInherit,  // the child gets the caller's fds 0, 1, 2 (one-shot runner)
};

struct CgroupLimits {
  std::optional<uint64_t> memory_max_bytes;       // memory.max
  std::optional<uint64_t> memory_swap_max_bytes;  // memory.swap.max (0 = no swap)
  std::optional<uint64_t> pids_max;               // pids.max: tasks, threads included
  std::optional<std::string> cpu_max;             // cpu.max, "QUOTA PERIOD" in microseconds
};

struct BindSpec {
  std::string source;  // host path
  std::string target;  // path inside the sandbox (usually the same)
  BindMode mode = BindMode::kReadOnly;
  // Mounted idmapped (SpawnRequest::idmap_owner): the owner's files appear as the session's,
  // and what the session creates is stored as the owner's. Needs a file system the kernel can
  // idmap; StartSpawn refuses others, naming the path and its file system.
  bool idmap = false;
};

// Who owns an idmapped bind's files on disk (SpawnRequest::idmap_owner).
struct IdmapOwner {
  uid_t uid;
  gid_t gid;
};

// A private writable home (filesystem_view.h): an overlay at `target` over the host directory
// `seed` (its lower layer, never written), with the session's writes on a tmpfs of
// `max_bytes` (charged to the session's memory) that goes away with the session.
struct HomeSpec {
  std::string seed;    // host path, validated like a bind source
  std::string target;  // path in the sandbox (usually the seed's own)
  uint64_t max_bytes = 1ull << 30;
  // The seed is seen through the request's idmap (idmap_owner's ids as the session's): a
  // session with an id of its own reads the owner's files in the lower layer.
  bool idmap = false;
};

struct RlimitSpec {
  int resource;   // RLIMIT_*
  uint64_t soft;  // RLIM_INFINITY for none
  uint64_t hard;
};

// Protections that only tests turn off, to show that a probe detects the escape
// each protection prevents. Production code never sets these.
struct UnsafeForTests {
  bool keep_host_filesystem = false;
  // The view before the allowlist: the host's whole root read-only minus the hidden paths
  // (host sockets under /run, /home, /srv, /var all visible).
  bool host_root_view = false;
  bool keep_ids = false;
  bool keep_capabilities = false;
  bool no_new_privs_off = false;
  bool share_pid_namespace = false;
  bool share_cgroup_namespace = false;
};

struct SpawnRequest {
  std::vector<std::string> argv;  // argv[0] is searched in `search_path` unless it has a '/'
  std::vector<std::string> env;   // "NAME=value"; nothing else is passed
  std::string search_path = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

  std::vector<BindSpec> binds;             // e.g. the workspace, read-write
  std::vector<std::string> hide;           // paths covered by an empty file or directory
  std::optional<HomeSpec> home;            // the session's private home; empty: none
  std::string workspace;                   // cwd inside the sandbox; must lie in a read-write bind
  uint64_t tmp_size_bytes = 256ull << 20;  // private /tmp
  // Contents of kTaskFilePath (a task too long for one execve argument, which the shell
  // sources from there); empty: no such file. Counts against tmp_size_bytes.
  std::string task_file;
  std::string hostname = "monkeyproof";
  NetworkMode network = NetworkMode::kNone;
  // Not kHost: a network namespace (fd, not owned; open until Spawn returns) for the session
  // to join instead of a new one with only loopback (CreateAllowlistNetns); -1: a new one.
  // kAllowlist without it gets a new one: its connections fail, closed.
  int netns_fd = -1;

  uid_t uid = 65534;  // run-as ids; 0 is refused unless allow_root
  gid_t gid = 65534;
  bool allow_root = false;
  // The owner that binds with `idmap` map to uid/gid; required when one has it.
  std::optional<IdmapOwner> idmap_owner;
  // max= of the sandbox's private devpts: terminals it may have open at once; 0: no cap of
  // its own (the kernel's kernel.pty.max minus kernel.pty.reserve, shared by every instance).
  uint32_t pty_max = 0;

  std::vector<RlimitSpec> rlimits;  // applied after the defaults below unless overridden
  CgroupLimits limits;
  // The session's /proc/PID/oom_score_adj (-1000..1000), set before anything else runs; empty
  // keeps the supervisor's, which the children inherit (negative under the shipped unit).
  std::optional<int> oom_score_adj;
  // Compiled BPF (see seccomp.h); nullptr runs without a filter, which only
  // tests may do. Must stay alive until Spawn() returns.
  const struct sock_fprog* seccomp = nullptr;

  StdioMode stdio = StdioMode::kPipes;
  unsigned short pty_rows = 24, pty_cols = 80;
  // Capacity of the stdout and stderr pipes (kPipes), bytes; 0 keeps the kernel's 64 KiB.
  // A larger pipe lets a fast writer run while the reader is busy elsewhere; the kernel
  // charges the pages to the writer's cgroup (memory.max) and allocates them only as output
  // waits in the pipe. A failure to resize is recorded in SpawnedChild::notes, not fatal.
  size_t output_pipe_bytes = kDefaultOutputPipeBytes;

  UnsafeForTests unsafe;
  // Test hook: init stops for good before it reports "started" (the command runs), so a
  // test can show that a spawn wedged in setup blocks nothing else. Never set in production.
  bool stall_before_start_report = false;
  // Test hook: this setup step fails on purpose (ECANCELED) when the child begins it, to show
  // that every step's failure reaches the caller with the step's name. kNone in production.
  ChildStep test_fail_step = ChildStep::kNone;
  std::chrono::milliseconds start_timeout{30000};  // clone → execve of the command (Spawn())
  // Once the command runs, the sandbox keeps running when the supervisor exits (no
  // parent-death signal), for a supervisor that hands the session's fds to systemd's fd
  // store and takes them back after a restart. It ends by itself once no process holds the
  // supervisor's end of the handshake socket (`report`): nobody could adopt it any more.
  // Off: the session dies with the supervisor.
  bool outlive_supervisor = false;
};

// Resizes the pipe `fd` belongs to (F_SETPIPE_SZ) to at least `bytes` (the kernel rounds up
// to a power of two of pages) and returns its new capacity. Without CAP_SYS_RESOURCE the
// kernel refuses sizes above /proc/sys/fs/pipe-max-size: the request is then lowered to that
// and tried once more. Fails naming the call when the pipe keeps its size.
Result<size_t> ResizePipe(int fd, size_t bytes);

// Defaults applied to every spawn unless the request sets the resource.
// core 0, nofile 4096, nproc 4096, fsize 8 GiB.
std::vector<RlimitSpec> DefaultRlimits();

struct SpawnedChild {
  PidFd init;  // the sandbox's pid 1
  CgroupLeaf leaf;
  UniqueFd report;  // handshake socket: SpawnReport kExited arrives here
  UniqueFd stdin_write;
  UniqueFd stdout_read;
  UniqueFd stderr_read;
  UniqueFd pty_master;
  // What did not go as asked but did not stop the spawn (an output pipe left at its old
  // size), one sentence each, for the caller to log.
  std::vector<std::string> notes;
};

// Figures for an ended sandbox.
struct ExitInfo {
  WaitStatus status;      // the command's, when init reported it; else init's
  bool reported = false;  // false: init died first (killed: OOM, cgroup.kill, ...)
  CgroupStats stats;
};

// A child cloned but not yet known to run its command. `child.report` is the handshake
// socket: wait for it to be readable, then call PollHandshake().
struct PendingSpawn {
  SpawnedChild child;
  ChildStep last_step = ChildStep::kNone;  // the last step the child reported beginning
};

// Validates, creates the leaf, clones. On error nothing is left behind (the leaf is removed).
Result<PendingSpawn> StartSpawn(const CgroupRoot& root, const std::string& leaf_name,
                                const SpawnRequest& request);

enum class HandshakeState { kPending, kStarted };
// Reads every record that has arrived. kStarted: the command runs; kPending: wait for more.
// An error names the step that failed (its errno and object) or says that init died during
// setup; the child is then dead or dying: kill its leaf and reap init once it has exited.
Result<HandshakeState> PollHandshake(PendingSpawn& pending);

// The message for a child that did not finish setup in time, naming the step it was in.
Error SpawnTimeoutError(const PendingSpawn& pending, std::chrono::milliseconds timeout);

// Blocking (for Spawn() and one-shot callers; an event loop kills the leaf and waits for
// init's pidfd instead): kills the leaf's processes and reaps init once it has exited, waiting
// at most `timeout` (a setup step in uninterruptible sleep holds init past the kill). The
// leaf remains until it is empty: remove it with FinishLeaf or LeafEmptied().
void AbortSpawn(SpawnedChild& child, std::chrono::milliseconds timeout);

// StartSpawn, then waits up to request.start_timeout for the handshake. Blocking: for
// one-shot callers (monkeyproofd exec, tests), never on the supervisor's loop.
Result<SpawnedChild> Spawn(const CgroupRoot& root, const std::string& leaf_name,
                           const SpawnRequest& request);

// What init reported when the command ended: the source of an end record's exit code or
// signal. Init's own wait status is only "exited 0" after it reported (or SIGKILL, when it
// was killed first), and only its parent can read even that; the report stays queued on
// the supervisor's end of the handshake socket after init is gone and reaped, for whoever
// holds that end (a restarted supervisor, through systemd's fd store).
struct ExitReport {
  WaitStatus status;
  int64_t exited_ms = 0;  // wall clock, ms since the epoch, when init reaped the command
};

// Reads init's exit report from the supervisor's end of the handshake socket, without
// blocking. nullopt: no report is there (init is running, or died before it could report:
// OOM kill, cgroup.kill); a record of another size or kind is an error.
Result<std::optional<ExitReport>> ReadExitReport(int report_fd);
// The same for a child's report socket, as its wait status.
Result<std::optional<WaitStatus>> ReadExitReport(const SpawnedChild& child);

// The command's end from what the caller could read: init's report, else (init died first)
// init's own status when the caller is its parent, else nothing.
std::optional<WaitStatus> CommandEnd(const Result<std::optional<ExitReport>>& report,
                                     const Result<std::optional<WaitStatus>>& init_status);

// After init was reaped: kill what is left, wait until the leaf is empty,
// read its figures and remove it. Blocking (poll on cgroup.events).
Result<CgroupStats> FinishLeaf(CgroupLeaf& leaf, std::chrono::milliseconds timeout);

// The non-blocking form, after leaf.Kill(): watch the leaf's cgroup.events (EPOLLPRI) and
// call this on every change.
// True once the leaf is empty; then its figures are read and the leaf removed into `stats`.
Result<bool> LeafEmptied(CgroupLeaf& leaf, CgroupStats* stats);

}  // namespace mp::sandbox

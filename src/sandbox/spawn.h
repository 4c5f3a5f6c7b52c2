// Spawn: one sandboxed command in its own cgroup v2 leaf and namespaces.
// Supervisor side. Spawn() validates the request, creates and limits the
// leaf, prepares the ChildPlan, clones with clone3(CLONE_PIDFD |
// CLONE_INTO_CGROUP | CLONE_NEW*) and waits for the handshake: the child's
// init reports "started" once the command's execve succeeded, or the step
// that failed with its errno. Not thread-safe; call from one thread.
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
#include "sandbox/cgroup.h"
#include "sandbox/child_plan.h"
#include "sandbox/pidfd.h"

namespace mp::sandbox {

enum class NetworkMode { kNone, kHost };  // kNone: own namespace, loopback only

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
  std::string workspace;                   // cwd inside the sandbox; must lie in a read-write bind
  uint64_t tmp_size_bytes = 256ull << 20;  // private /tmp
  std::string hostname = "monkeyproof";
  NetworkMode network = NetworkMode::kNone;

  uid_t uid = 65534;  // run-as ids; 0 is refused unless allow_root
  gid_t gid = 65534;
  bool allow_root = false;

  std::vector<RlimitSpec> rlimits;  // applied after the defaults below unless overridden
  CgroupLimits limits;
  // Compiled BPF (see seccomp.h); nullptr runs without a filter, which only
  // tests may do. Must stay alive until Spawn() returns.
  const struct sock_fprog* seccomp = nullptr;

  StdioMode stdio = StdioMode::kPipes;
  unsigned short pty_rows = 24, pty_cols = 80;

  UnsafeForTests unsafe;
  std::chrono::milliseconds start_timeout{30000};  // clone → execve of the command
};

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
};

// Figures for an ended sandbox.
struct ExitInfo {
  WaitStatus status;      // the command's, when init reported it; else init's
  bool reported = false;  // false: init died first (killed: OOM, cgroup.kill, ...)
  CgroupStats stats;
};

Result<SpawnedChild> Spawn(const CgroupRoot& root, const std::string& leaf_name,
                           const SpawnRequest& request);

// Reads init's exit report (non-blocking once the report fd is readable).
// Returns nullopt when the socket closed without one.
Result<std::optional<WaitStatus>> ReadExitReport(const SpawnedChild& child);

// After init was reaped: kill what is left, wait until the leaf is empty,
// read its figures and remove it.
Result<CgroupStats> FinishLeaf(CgroupLeaf& leaf, std::chrono::milliseconds timeout);

}  // namespace mp::sandbox

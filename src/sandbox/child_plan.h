// ChildPlan: everything the code between clone and exec needs, prepared by the
// supervisor beforehand. The child only reads it: no allocation, no locking,
// no exceptions after clone. Pointers point into storage owned by the parent's
// SpawnRequest/PreparedSpawn, which outlives the child's use of it (the child
// runs on a copy-on-write image of that memory).
#pragma once

#include <linux/filter.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace mp::sandbox {

// Steps of the child's fixed sequence; reported with the errno on failure.
enum class ChildStep : uint32_t {
  kNone = 0,
  kCloseInherited,
  kWaitGo,
  kParentDeathSignal,
  kSetsid,
  kMountPrivate,
  kMountCloneRoot,
  kMountRootReadOnly,
  kMountStaging,
  kMountAttachRoot,
  kMountBind,
  kMountProc,
  kMountDev,
  kMountTmp,
  kMountHide,
  kPivotRoot,
  kChdirWorkspace,
  kHostname,
  kLoopback,
  kRlimit,
  kCapBoundingSet,
  kSetgroups,
  kSetgid,
  kSetuid,
  kCapClear,
  kCloseFds,
  kMountCgroup,
  kNoNewPrivs,
  kSeccomp,
  kForkCommand,
  kStdio,
  kControllingTty,
  kExec,
  kReportStarted,
  kTaskFile,
  kOomScoreAdj,
  kMountHome,
};
const char* ChildStepName(ChildStep step);

// The file in the sandbox's private /tmp that holds a task too long for one execve argument
// (ChildPlan::task_file_data): its name in /tmp and its path as the sandbox sees it.
inline constexpr char kTaskFileName[] = ".monkeyproof-task";
inline constexpr char kTaskFilePath[] = "/tmp/.monkeyproof-task";

enum class BindMode : uint8_t { kReadOnly, kReadWrite };

struct PlanBind {
  const char* source;  // absolute host path, validated by the parent (no symlink, no "..")
  const char* target;  // absolute path inside the sandbox, validated likewise
  BindMode mode;
  bool idmap;  // mounted through ChildPlan::idmap_userns_fd (the owner's files as the session's)
};

struct PlanHide {
  const char* target;  // absolute path to cover: a directory gets an empty tmpfs, a file /dev/null
  bool is_directory;   // binds may land inside a hidden directory (a workspace under its root)
};

// One entry of the host's root that the allowlisted view shows (filesystem_view.h): a
// directory bound read-only at /NAME, or a symlink recreated as it is on the host
// (merged-/usr hosts have /bin -> usr/bin).
struct PlanRootEntry {
  const char* name;  // a name in the host's "/", no '/'
  const char* link;  // the symlink's target; nullptr: a directory, bound read-only
};

struct PlanRlimit {
  int resource;  // RLIMIT_*
  struct rlimit limit;
};

inline constexpr size_t kMaxBinds = 32;
inline constexpr size_t kMaxHides = 48;
inline constexpr size_t kMaxRootEntries = 16;
inline constexpr size_t kMaxRlimits = 16;

// Fixed report the child sends over the handshake socket when it begins a step
// (kProgress), when a step fails, once the command runs, and (the init process)
// when the command ended. The kExited record is the only record of the command's wait
// status: init is the command's parent, and a supervisor that did not clone init (one
// restarted while the session ran) cannot wait for it. It stays queued on the supervisor's
// end of the socket after init is gone. Its size is its format: a reader refuses a record of
// another size.
struct SpawnReport {
  enum Kind : uint32_t { kFailed = 1, kStarted = 2, kExited = 3, kProgress = 4 };
  uint32_t kind;
  uint32_t step;      // ChildStep for kFailed and kProgress
  int32_t errnum;     // errno for kFailed
  int32_t status;     // wait status of the command for kExited
  int64_t exited_ms;  // kExited: wall clock (CLOCK_REALTIME, ms) when init reaped the command
  char detail[128];   // the object of the failed step (a path, a program name)
};
static_assert(std::is_trivially_copyable_v<SpawnReport>);

struct ChildPlan {
  // Command. `argv`/`envp` are NULL-terminated. If `file` has no '/', it is
  // searched in `search_path` (colon-separated) inside the sandbox view.
  const char* file;
  char* const* argv;
  char* const* envp;
  const char* search_path;

  // Filesystem view. `isolate_filesystem` false keeps the host's mount tree
  // (used only by tests that show what the view protects against).
  bool isolate_filesystem;
  const char* staging_dir;  // existing host directory the child covers with a tmpfs
  const char* staged_root;  // staging_dir + "/root"
  const PlanBind* binds;
  size_t bind_count;
  // User namespace (fd) of the idmapped binds (sandbox/idmap.h); -1: none.
  int idmap_userns_fd;
  const PlanHide* hides;
  size_t hide_count;
  // The view's root: a fresh read-only tmpfs holding only these entries of the host's root
  // (then the binds, /proc, /dev, /sys/fs/cgroup, /tmp), unless `host_root_view`: the whole
  // host read-only, as before the allowlist (only tests set it, to show what the view hides).
  const PlanRootEntry* root_entries;
  size_t root_entry_count;
  bool host_root_view;
  // The session's private home: an overlay at `home_target` whose lower layer is the host
  // directory `home_seed` (read-only) and whose upper layer lives on a tmpfs of
  // `home_max_bytes` mounted at `home_layer` (a path in the staging tmpfs), owned by uid/gid.
  // nullptr home_seed: none. Discarded with the session's mount namespace.
  const char* home_seed;
  const char* home_target;
  const char* home_layer;
  uint64_t home_max_bytes;
  // The seed is mounted as the lower layer through idmap_userns_fd (a clone of it, idmapped,
  // read-only, in home_layer) instead of by its host path.
  bool home_idmap;
  uint32_t pty_max;         // max= of the private devpts; 0: the kernel's default
  const char* workspace;    // cwd after the pivot; nullptr keeps "/"
  uint64_t tmp_size_bytes;  // size= of the private /tmp tmpfs
  // Bytes written to kTaskFileName in the private /tmp (root-owned, mode 0444) once it is
  // mounted; nullptr: no file. Needs isolate_filesystem.
  const char* task_file_data;
  size_t task_file_bytes;

  const char* hostname;  // nullptr keeps the host's (only with no UTS namespace)
  bool loopback_up;      // bring "lo" up (new network namespace)
  // A network namespace to join (setns) instead, already set up (an allowlist session's,
  // session_netns.h); -1: none. Kept open across CloseInheritedFds, closed after the join.
  int netns_fd;

  const PlanRlimit* rlimits;
  size_t rlimit_count;

  // Written to /proc/self/oom_score_adj first thing, while the child still has the
  // supervisor's privileges (lowering it would need CAP_SYS_RESOURCE; raising never does).
  bool set_oom_score_adj;
  int oom_score_adj;  // -1000..1000, checked by the parent

  // Credentials.
  bool change_ids;  // false: keep the parent's ids (tests only)
  uid_t uid;
  gid_t gid;
  int last_cap;            // /proc/sys/kernel/cap_last_cap, read by the parent
  bool drop_capabilities;  // bounding set cleared, all sets emptied
  bool no_new_privs;
  const struct sock_fprog* seccomp;  // nullptr: no filter (tests only)

  // Standard I/O: fds in the child to dup onto 0, 1, 2 (-1: /dev/null).
  int stdin_fd;
  int stdout_fd;
  int stderr_fd;
  bool pty;  // stdin_fd is a PTY slave: make it the controlling terminal

  int report_fd;     // child's end of the handshake socket
  int parent_pidfd;  // pidfd of the supervisor: the child exits if it is gone during setup
  // Once the command runs (kStarted sent), init no longer dies with the supervisor: the
  // session outlives a supervisor restart (SpawnRequest::outlive_supervisor). During setup it
  // always does.
  bool outlive_parent;
  bool wait_for_go;  // wait for the parent's GO byte (user namespace maps)
  // Test hook (SpawnRequest::stall_before_start_report): init blocks for good instead of
  // reporting kStarted.
  bool stall_before_start_report;
  // Test hook (SpawnRequest::test_fail_step): the ChildStep that fails on purpose when it
  // begins (BeginStepInChild); 0 (kNone) in production.
  uint32_t test_fail_step;
};
static_assert(std::is_standard_layout_v<ChildPlan>);
static_assert(std::is_trivially_destructible_v<ChildPlan>);

}  // namespace mp::sandbox

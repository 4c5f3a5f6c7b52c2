// Cgroup v2: the delegated root under which session leaves live, and one leaf.
// Runs in the supervisor (and privileged tests); never in the child. Every
// file access goes through the leaf's directory fd, so a rename or a symlink
// planted elsewhere in the tree cannot redirect a write. Not thread-safe per
// object; objects are move-only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::sandbox {

// True when `path` is on a cgroup2 file system (statfs magic).
bool IsCgroup2(const std::string& path);

// Resource figures read from a leaf; a figure the kernel does not offer stays empty.
struct CgroupStats {
  std::optional<uint64_t> memory_peak_bytes;  // memory.peak (kernel >= 5.19)
  std::optional<uint64_t> memory_current_bytes;
  uint64_t oom_events = 0;                 // memory.events "oom"
  uint64_t oom_kill_events = 0;            // memory.events "oom_kill"
  std::optional<uint64_t> cpu_usage_usec;  // cpu.stat "usage_usec"
  std::optional<uint64_t> pids_peak;       // pids.peak (kernel >= 6.1)
  uint64_t pids_max_events = 0;            // pids.events "max": forks refused
};

// A cgroup that session leaves are created in (PrepareCgroupRoot returns the daemon's: the
// kSessionsCgroup of its delegated subtree, e.g. .../monkeyproof-sessions.service/sessions).
class CgroupRoot {
 public:
  // Opens an existing cgroup2 directory. Fails if it is not cgroup2.
  static Result<CgroupRoot> Open(const std::string& path);

  // Controllers the parent makes available here (cgroup.controllers).
  Result<std::vector<std::string>> AvailableControllers() const;
  // Writes "+c" for each controller to cgroup.subtree_control. The root must
  // hold no process itself (cgroup v2's "no internal processes" rule).
  Result<void> EnableControllers(const std::vector<std::string>& controllers);

  const std::string& path() const { return path_; }
  int dirfd() const { return dir_.get(); }

 private:
  std::string path_;
  UniqueFd dir_;
};

// The aggregate memory cap of every session together: memory.max of the cgroup that holds the
// session leaves (`sessions_parent`: the one PrepareCgroupRoot returns, kSessionsCgroup below
// the configured root), in bytes, or "max" (no cap) when empty. With it, sessions under their
// own caps cannot together take the host: past it the kernel OOM-kills inside that cgroup,
// never outside it.
Result<void> ApplySessionsMemoryCap(const CgroupRoot& sessions_parent,
                                    std::optional<uint64_t> bytes);

// The value of a cgroup-root setting that means "the caller's own cgroup".
inline constexpr std::string_view kAutoCgroupRoot = "auto";

// The cgroup2 path of the caller's own cgroup, from the text of /proc/self/cgroup (its "0::"
// line) below `mount` (normally /sys/fs/cgroup). A trailing "/supervisor" is dropped: a
// restarted supervisor finds itself in the leaf it made for itself. Fails, saying how to fix
// it, when there is no cgroup v2 line.
Result<std::string> OwnCgroupPath(std::string_view proc_self_cgroup, std::string_view mount);

// The cgroup2 path of systemd unit `unit` in the caller's own slice: the sibling of the
// caller's unit cgroup (OwnCgroupPath), e.g. ".../system.slice/monkeyproof-sessions.service".
// Fails when the caller's cgroup is the hierarchy's root. Pure: the caller checks it exists.
Result<std::string> SiblingUnitCgroupPath(std::string_view proc_self_cgroup, std::string_view mount,
                                          std::string_view unit);

// The leaf of an absolute cgroup root that PrepareCgroupRoot moves the root's own processes
// into: the anchor process of a sessions unit, which systemd starts in the unit's cgroup.
inline constexpr char kAnchorLeaf[] = "anchor";

// The cgroup below the configured root that holds every session leaf and nothing else. Its
// memory.max is the sessions' aggregate cap (ApplySessionsMemoryCap). It is a cgroup of the
// supervisor's own because the root's control files are not the supervisor's to write: under
// systemd the root is a unit's delegated cgroup, whose own attributes (memory.max among them)
// systemd manages from the unit's settings; only the subtree below it is delegated.
inline constexpr char kSessionsCgroup[] = "sessions";

// The one preparer of the cgroups for session leaves, used by the daemon and by
// `monkeyproofd exec`. The configured root (`path`) is
//   - kAutoCgroupRoot: the caller's own cgroup (OwnCgroupPath); the caller first moves into
//     a "supervisor" leaf below it, since cgroup v2 allows no processes in a cgroup that
//     hands controllers to its children;
//   - an absolute path: opened, or created (mode 0755) below an existing cgroup2 parent;
//     processes in the root itself (a sessions unit's anchor) are moved into its leaf
//     kAnchorLeaf, for the same rule.
// Memory, pids and cpu must be available there (else an error that says how to delegate
// them) and are enabled in its cgroup.subtree_control. Then <root>/kSessionsCgroup is
// created (or reused), the same controllers enabled in it, and it is returned: session
// leaves go below it, never beside the anchor or the supervisor.
Result<CgroupRoot> PrepareCgroupRoot(const std::string& path);

class CgroupLeaf {
 public:
  // mkdir `name` under root and open it. `name` must be one path component
  // of [A-Za-z0-9._-], not "." or "..". Fails with EEXIST if it is present.
  static Result<CgroupLeaf> Create(const CgroupRoot& root, std::string_view name);
  // Opens a leaf left by an earlier run (restart recovery).
  static Result<CgroupLeaf> OpenExisting(const CgroupRoot& root, std::string_view name);

  CgroupLeaf(CgroupLeaf&&) = default;
  CgroupLeaf& operator=(CgroupLeaf&&) = default;
  ~CgroupLeaf() = default;  // Never removes on its own: call Remove() after reaping.

  // Writes `value` to a control file, e.g. Write("memory.max", "33554432").
  Result<void> Write(std::string_view file, std::string_view value) const;
  Result<std::string> Read(std::string_view file) const;
  // Opens a control file for epoll (cgroup.events, memory.events: EPOLLPRI).
  Result<UniqueFd> OpenEventFile(std::string_view file) const;

  // Moves a process in (cgroup.procs). Spawning uses CLONE_INTO_CGROUP instead.
  Result<void> AddProcess(int pid) const;
  // "populated 1" in cgroup.events.
  Result<bool> Populated() const;
  // Kills every process in the leaf and its descendants: cgroup.kill
  // (kernel >= 5.14), else freeze, SIGKILL every pid listed, thaw.
  Result<void> Kill() const;
  Result<CgroupStats> Stats() const;
  // rmdir; fails with EBUSY while populated.
  Result<void> Remove();

  const std::string& name() const { return name_; }
  // The directory fd, as CLONE_INTO_CGROUP wants it.
  int dirfd() const { return dir_.get(); }

 private:
  CgroupLeaf(std::string name, UniqueFd parent, UniqueFd dir)
      : name_(std::move(name)), parent_(std::move(parent)), dir_(std::move(dir)) {}
  Result<void> KillByFreezing() const;

  std::string name_;
  UniqueFd parent_;  // dup of the root's dirfd, for the final rmdir
  UniqueFd dir_;
};

// Parses "key value" lines (memory.events, cpu.stat, pids.events) for `key`.
std::optional<uint64_t> FindKeyedValue(std::string_view text, std::string_view key);

}  // namespace mp::sandbox

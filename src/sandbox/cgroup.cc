#include "sandbox/cgroup.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <thread>

namespace mp::sandbox {
namespace {

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 200 || name == "." || name == "..") return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::string> ReadAt(int dirfd, std::string_view file, std::string_view object) {
  const std::string f(file);
  UniqueFd fd(::openat(dirfd, f.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoError("openat(cgroup \"" + std::string(object) + "\", \"" + f + "\")");
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read(cgroup \"" + std::string(object) + "\", \"" + f + "\")");
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<void> WriteAt(int dirfd, std::string_view file, std::string_view value,
                     std::string_view object) {
  const std::string f(file);
  UniqueFd fd(::openat(dirfd, f.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoError("openat(cgroup \"" + std::string(object) + "\", \"" + f + "\")");
  // Control files take one value per write(); a short write is an error.
  const ssize_t n = ::write(fd.get(), value.data(), value.size());
  if (n < 0) {
    return ErrnoError("write(cgroup \"" + std::string(object) + "\", \"" + f + "\", \"" +
                      std::string(value) + "\")");
  }
  if (static_cast<size_t>(n) != value.size()) {
    return PlainError("short write to cgroup \"" + std::string(object) + "\" " + f);
  }
  return Ok();
}

std::optional<uint64_t> ParseU64(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

bool IsCgroup2(const std::string& path) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
}

std::optional<uint64_t> FindKeyedValue(std::string_view text, std::string_view key) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ') {
      return ParseU64(line.substr(key.size() + 1));
    }
    pos = eol + 1;
  }
  return std::nullopt;
}

Result<CgroupRoot> CgroupRoot::Open(const std::string& path) {
  if (!IsCgroup2(path)) {
    return PlainError("cgroup root \"" + path + "\" is not on a cgroup2 file system");
  }
  CgroupRoot root;
  root.path_ = path;
  root.dir_.Reset(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.dir_) return ErrnoError("open(cgroup root \"" + path + "\")");
  return root;
}

Result<std::vector<std::string>> CgroupRoot::AvailableControllers() const {
  MP_TRY(std::string text, ReadAt(dir_.get(), "cgroup.controllers", path_));
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find_first_of(" \n", pos);
    if (end == std::string::npos) end = text.size();
    if (end > pos) out.emplace_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

Result<void> CgroupRoot::EnableControllers(const std::vector<std::string>& controllers) {
  for (const auto& c : controllers) {
    MP_RETURN_IF_ERROR(WriteAt(dir_.get(), "cgroup.subtree_control", "+" + c, path_));
  }
  return Ok();
}

Result<void> ApplySessionsMemoryCap(const CgroupRoot& sessions_parent,
                                    std::optional<uint64_t> bytes) {
  return WriteAt(sessions_parent.dirfd(), "memory.max", bytes ? std::to_string(*bytes) : "max",
                 sessions_parent.path());
}

Result<std::string> OwnCgroupPath(std::string_view proc_self_cgroup, std::string_view mount) {
  std::string_view own;
  size_t pos = 0;
  while (pos < proc_self_cgroup.size()) {
    size_t eol = proc_self_cgroup.find('\n', pos);
    if (eol == std::string_view::npos) eol = proc_self_cgroup.size();
    const std::string_view line = proc_self_cgroup.substr(pos, eol - pos);
    if (line.starts_with("0::")) own = line.substr(3);
    pos = eol + 1;
  }
  if (own.empty()) {
    return PlainError(
        "no cgroup v2 membership in /proc/self/cgroup: this host has no unified "
        "cgroup hierarchy (boot with systemd.unified_cgroup_hierarchy=1)");
  }
  constexpr std::string_view kSelfLeaf = "/supervisor";
  if (own.size() > kSelfLeaf.size() && own.ends_with(kSelfLeaf)) {
    own.remove_suffix(kSelfLeaf.size());  // restarted inside our own leaf
  }
  return std::string(mount) + (own == "/" ? "" : std::string(own));
}

Result<std::string> SiblingUnitCgroupPath(std::string_view proc_self_cgroup, std::string_view mount,
                                          std::string_view unit) {
  MP_TRY(std::string own, OwnCgroupPath(proc_self_cgroup, mount));
  const size_t slash = own.rfind('/');
  if (own.size() <= mount.size() || slash == std::string::npos || slash < mount.size()) {
    return PlainError("the caller's cgroup is the root of the hierarchy: no unit \"" +
                      std::string(unit) + "\" beside it");
  }
  return own.substr(0, slash + 1) + std::string(unit);
}

namespace {

// Moves every process of `root` itself into its leaf kAnchorLeaf (made if missing).
Result<void> MoveRootProcessesToAnchor(const CgroupRoot& root) {
  MP_TRY(std::string procs, ReadAt(root.dirfd(), "cgroup.procs", root.path()));
  if (procs.find_first_not_of(" \n") == std::string::npos) return Ok();
  if (::mkdirat(root.dirfd(), kAnchorLeaf, 0755) != 0 && errno != EEXIST) {
    return ErrnoError("mkdirat(cgroup root \"" + root.path() + "\", \"" + kAnchorLeaf + "\")");
  }
  MP_TRY(auto anchor, CgroupLeaf::OpenExisting(root, kAnchorLeaf));
  size_t pos = 0;
  while (pos < procs.size()) {
    size_t eol = procs.find('\n', pos);
    if (eol == std::string::npos) eol = procs.size();
    const std::string pid = procs.substr(pos, eol - pos);
    pos = eol + 1;
    if (pid.empty()) continue;
    // A process that exited meanwhile is gone from the root as well: ESRCH is no failure.
    if (auto r = anchor.Write("cgroup.procs", pid); !r && r.error().errnum != ESRCH) {
      return std::move(r).error().Wrap("move pid " + pid + " of the cgroup root into \"" +
                                       kAnchorLeaf + "\"");
    }
  }
  return Ok();
}

}  // namespace

Result<CgroupRoot> PrepareCgroupRoot(const std::string& path) {
  std::string resolved = path;
  if (path == kAutoCgroupRoot) {
    MP_TRY(std::string self_cgroup, ReadAt(AT_FDCWD, "/proc/self/cgroup", "/proc/self"));
    MP_TRY(resolved, OwnCgroupPath(self_cgroup, "/sys/fs/cgroup"));
    // cgroup v2 allows no processes in a cgroup that enables controllers for its children,
    // so the caller moves into a leaf of its own first.
    MP_TRY(auto own, CgroupRoot::Open(resolved));
    if (::mkdirat(own.dirfd(), "supervisor", 0755) != 0 && errno != EEXIST) {
      return ErrnoError("mkdir(cgroup \"" + resolved + "/supervisor\")");
    }
    MP_TRY(auto self_leaf, CgroupLeaf::OpenExisting(own, "supervisor"));
    MP_RETURN_IF_ERROR(self_leaf.AddProcess(0));
  } else if (path.empty() || path.front() != '/') {
    return PlainError("cgroup root \"" + path + "\" is neither an absolute path nor \"" +
                      std::string(kAutoCgroupRoot) + "\"");
  } else if (::access(path.c_str(), F_OK) != 0) {
    const size_t slash = path.rfind('/');
    const std::string parent_path = slash == 0 ? "/" : path.substr(0, slash);
    MP_TRY(auto parent, CgroupRoot::Open(parent_path));
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError("mkdir(cgroup root \"" + path + "\")");
    }
  }
  MP_TRY(auto root, CgroupRoot::Open(resolved));
  if (path != kAutoCgroupRoot) MP_RETURN_IF_ERROR(MoveRootProcessesToAnchor(root));
  MP_TRY(auto available, root.AvailableControllers());
  std::string missing;
  for (const char* c : {"memory", "pids", "cpu"}) {
    bool found = false;
    for (const auto& a : available) found = found || a == c;
    if (!found) missing += std::string(missing.empty() ? "" : ", ") + c;
  }
  if (!missing.empty()) {
    return PlainError("cgroup root \"" + resolved + "\" lacks the " + missing +
                      " controller(s). Under systemd set Delegate=yes on the unit; otherwise "
                      "enable them in the parent's cgroup.subtree_control, e.g. "
                      "echo '+memory +pids +cpu' > <parent>/cgroup.subtree_control");
  }
  MP_RETURN_IF_ERROR(root.EnableControllers({"memory", "pids", "cpu"}));
  if (::mkdirat(root.dirfd(), kSessionsCgroup, 0755) != 0 && errno != EEXIST) {
    return ErrnoError("mkdirat(cgroup root \"" + resolved + "\", \"" + kSessionsCgroup + "\")");
  }
  MP_TRY(auto sessions, CgroupRoot::Open(resolved + "/" + kSessionsCgroup));
  if (auto r = sessions.EnableControllers({"memory", "pids", "cpu"}); !r) {
    return std::move(r).error().Wrap(
        "enable controllers for the session leaves (no process may run in \"" + resolved + "/" +
        kSessionsCgroup + "\" itself)");
  }
  return sessions;
}

Result<CgroupLeaf> CgroupLeaf::Create(const CgroupRoot& root, std::string_view name) {
  if (!ValidName(name)) return PlainError("invalid cgroup leaf name \"" + std::string(name) + "\"");
  const std::string n(name);
  if (::mkdirat(root.dirfd(), n.c_str(), 0755) != 0) {
    return ErrnoError("mkdirat(cgroup root \"" + root.path() + "\", \"" + n + "\")");
  }
  return OpenExisting(root, name);
}

Result<CgroupLeaf> CgroupLeaf::OpenExisting(const CgroupRoot& root, std::string_view name) {
  if (!ValidName(name)) return PlainError("invalid cgroup leaf name \"" + std::string(name) + "\"");
  const std::string n(name);
  UniqueFd dir(::openat(root.dirfd(), n.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!dir) return ErrnoError("openat(cgroup root \"" + root.path() + "\", \"" + n + "\")");
  UniqueFd parent(::fcntl(root.dirfd(), F_DUPFD_CLOEXEC, 0));
  if (!parent) return ErrnoError("fcntl(F_DUPFD_CLOEXEC, cgroup root)");
  return CgroupLeaf(n, std::move(parent), std::move(dir));
}

Result<void> CgroupLeaf::Write(std::string_view file, std::string_view value) const {
  return WriteAt(dir_.get(), file, value, name_);
}

Result<std::string> CgroupLeaf::Read(std::string_view file) const {
  return ReadAt(dir_.get(), file, name_);
}

Result<UniqueFd> CgroupLeaf::OpenEventFile(std::string_view file) const {
  const std::string f(file);
  UniqueFd fd(::openat(dir_.get(), f.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoError("openat(cgroup \"" + name_ + "\", \"" + f + "\")");
  return fd;
}

Result<void> CgroupLeaf::AddProcess(int pid) const {
  return Write("cgroup.procs", std::to_string(pid));
}

Result<bool> CgroupLeaf::Populated() const {
  MP_TRY(std::string text, Read("cgroup.events"));
  auto v = FindKeyedValue(text, "populated");
  if (!v) return PlainError("cgroup \"" + name_ + "\": cgroup.events has no populated line");
  return *v != 0;
}

Result<void> CgroupLeaf::Kill() const {
  auto r = Write("cgroup.kill", "1");
  if (r) return Ok();
  // cgroup.kill arrived in 5.14; older kernels lack the file.
  if (r.error().errnum != ENOENT) return r;
  return KillByFreezing();
}

Result<void> CgroupLeaf::KillByFreezing() const {
  // A frozen cgroup cannot fork, so the pid list read while frozen is complete.
  MP_RETURN_IF_ERROR(Write("cgroup.freeze", "1"));
  for (int round = 0; round < 100; ++round) {
    MP_TRY(std::string procs, Read("cgroup.procs"));
    if (procs.empty()) break;
    size_t pos = 0;
    while (pos < procs.size()) {
      size_t eol = procs.find('\n', pos);
      if (eol == std::string::npos) eol = procs.size();
      if (auto pid = ParseU64(std::string_view(procs).substr(pos, eol - pos))) {
        // Within a frozen cgroup a pid cannot be reaped and reused while we look.
        ::kill(static_cast<pid_t>(*pid), SIGKILL);
      }
      pos = eol + 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return Write("cgroup.freeze", "0");
}

Result<CgroupStats> CgroupLeaf::Stats() const {
  CgroupStats s;
  if (auto t = Read("memory.peak")) s.memory_peak_bytes = ParseU64(*t);
  if (auto t = Read("memory.current")) s.memory_current_bytes = ParseU64(*t);
  if (auto t = Read("memory.events")) {
    s.oom_events = FindKeyedValue(*t, "oom").value_or(0);
    s.oom_kill_events = FindKeyedValue(*t, "oom_kill").value_or(0);
  }
  if (auto t = Read("cpu.stat")) s.cpu_usage_usec = FindKeyedValue(*t, "usage_usec");
  if (auto t = Read("pids.peak")) s.pids_peak = ParseU64(*t);
  if (auto t = Read("pids.events")) s.pids_max_events = FindKeyedValue(*t, "max").value_or(0);
  return s;
}

Result<void> CgroupLeaf::Remove() {
  if (::unlinkat(parent_.get(), name_.c_str(), AT_REMOVEDIR) != 0) {
    return ErrnoError("rmdir(cgroup \"" + name_ + "\")");
  }
  dir_.Reset();
  return Ok();
}

}  // namespace mp::sandbox

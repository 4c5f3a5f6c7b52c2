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

#include "proc_watch.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>
#include <thread>

#include "common/unique_fd.h"

namespace mp::testing {
std::optional<std::string> ReadWholeFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::optional<std::vector<pid_t>> LeafProcesses(const std::string& leaf_dir) {
  auto text = ReadWholeFile(leaf_dir + "/cgroup.procs");
  if (!text) return std::nullopt;
  std::vector<pid_t> pids;
  std::istringstream in(*text);
  for (long pid = 0; in >> pid;) pids.push_back(static_cast<pid_t>(pid));
  return pids;
}

std::string Cmdline(pid_t pid) {
  std::string s = ReadWholeFile("/proc/" + std::to_string(pid) + "/cmdline").value_or("");
  if (!s.empty() && s.back() == '\0') s.pop_back();
  for (char& c : s) c = c == '\0' ? ' ' : c;
  return s;
}

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  auto stat = ReadWholeFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream rest(stat->substr(paren + 1));
  ProcStat s;
  long ppid = 0, pgrp = 0, session = 0;
  if (!(rest >> s.state >> ppid >> pgrp >> session)) return std::nullopt;
  s.ppid = static_cast<pid_t>(ppid);
  s.session = static_cast<pid_t>(session);
  return s;
}

pid_t FindByCmdline(const std::vector<pid_t>& pids, const std::string& cmdline) {
  for (pid_t p : pids) {
    if (Cmdline(p) == cmdline) return p;
  }
  return 0;
}

}  // namespace mp::testing

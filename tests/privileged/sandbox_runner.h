// Test helper for privileged suites: runs one command through sandbox::Spawn
// with pipes, collects its output and end, and cleans the leaf up. Runs in
// the test VM only (see tests/privileged/vm_guard.h).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "sandbox/seccomp.h"
#include "sandbox/spawn.h"

namespace mp::testing {

struct RunResult {
  std::string out;  // stdout then stderr
  sandbox::ExitInfo end;
  int exit_code() const { return end.status.exited ? end.status.code : -1; }
  bool killed_by(int sig) const { return !end.status.exited && end.status.signal == sig; }
};

class SandboxRunner {
 public:
  // Creates (or reuses) the cgroup root /sys/fs/cgroup/<name> with memory,
  // pids and cpu enabled, and a workspace directory owned by the run-as user.
  explicit SandboxRunner(const std::string& name);
  ~SandboxRunner();

  // The full default sandbox: nobody, workspace rw, default seccomp, no network.
  sandbox::SpawnRequest BaseRequest(std::vector<std::string> argv) const;

  // Spawns, reads all output, waits. `while_running` runs once after spawn
  // (e.g. to kill the tree); `finish_leaf` false leaves the leaf for the caller.
  Result<RunResult> Run(
      const sandbox::SpawnRequest& req,
      const std::function<void(sandbox::SpawnedChild&, std::string&)>& while_running = nullptr);

  const std::string& workspace() const { return workspace_; }
  const sandbox::CgroupRoot& root() const { return *root_; }

 private:
  std::optional<sandbox::CgroupRoot> root_;
  std::optional<sandbox::SeccompProgram> seccomp_;
  std::string workspace_;
  int counter_ = 0;
};

}  // namespace mp::testing

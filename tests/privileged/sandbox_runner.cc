#include "sandbox_runner.h"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace mp::testing {

SandboxRunner::SandboxRunner(const std::string& name) {
  auto top = sandbox::CgroupRoot::Open("/sys/fs/cgroup");
  if (!top) throw std::runtime_error(top.error().ToString());
  const std::string path = "/sys/fs/cgroup/" + name;
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    throw std::runtime_error("mkdir " + path);
  auto root = sandbox::CgroupRoot::Open(path);
  if (!root) throw std::runtime_error(root.error().ToString());
  if (auto r = root->EnableControllers({"memory", "pids", "cpu"}); !r) {
    throw std::runtime_error(r.error().ToString());
  }
  root_.emplace(std::move(*root));
  auto prog = sandbox::CompileSeccomp(sandbox::DefaultDenyProfile());
  if (!prog) throw std::runtime_error(prog.error().ToString());
  seccomp_.emplace(std::move(*prog));
  workspace_ = "/var/tmp/" + name + "-ws-" + std::to_string(::getpid());
  if (::mkdir(workspace_.c_str(), 0755) != 0 && errno != EEXIST) {
    throw std::runtime_error("mkdir " + workspace_);
  }
  if (::chown(workspace_.c_str(), 65534, 65534) != 0) throw std::runtime_error("chown workspace");
}

SandboxRunner::~SandboxRunner() {
  const std::string cmd = "rm -rf '" + workspace_ + "'";
  if (std::system(cmd.c_str()) != 0)
    std::fprintf(stderr, "could not remove %s\n", workspace_.c_str());
}

sandbox::SpawnRequest SandboxRunner::BaseRequest(std::vector<std::string> argv) const {
  sandbox::SpawnRequest r;
  r.argv = std::move(argv);
  r.env = {"PATH=/usr/bin:/bin", "HOME=" + workspace_};
  r.binds.push_back({workspace_, workspace_, sandbox::BindMode::kReadWrite});
  r.workspace = workspace_;
  r.seccomp = seccomp_->fprog();
  r.limits.memory_max_bytes = 512ull << 20;
  r.limits.memory_swap_max_bytes = 0;
  r.limits.pids_max = 256;
  return r;
}

Result<RunResult> SandboxRunner::Run(
    const sandbox::SpawnRequest& req,
    const std::function<void(sandbox::SpawnedChild&, std::string&)>& while_running) {
  const std::string leaf = "run-" + std::to_string(::getpid()) + "-" + std::to_string(++counter_);
  MP_TRY(sandbox::SpawnedChild child, sandbox::Spawn(*root_, leaf, req));
  child.stdin_write.Reset();
  RunResult result;
  if (while_running) while_running(child, result.out);
  // Drain both pipes until EOF, then reap.
  int open_fds = 2;
  while (open_fds > 0) {
    struct pollfd pfds[2] = {{child.stdout_read.get(), POLLIN, 0},
                             {child.stderr_read.get(), POLLIN, 0}};
    if (::poll(pfds, 2, 30000) <= 0) return PlainError("no output and no EOF within 30 s");
    for (int i = 0; i < 2; ++i) {
      if (pfds[i].fd < 0 || pfds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = ::read(pfds[i].fd, buf, sizeof buf);
      if (n > 0) {
        result.out.append(buf, static_cast<size_t>(n));
      } else {
        (i == 0 ? child.stdout_read : child.stderr_read).Reset();
        --open_fds;
      }
    }
  }
  MP_TRY(auto reported, sandbox::ReadExitReport(child));
  MP_TRY(auto init_status, child.init.Wait());
  if (!reported) {
    // The report may arrive just before init's exit becomes visible.
    MP_TRY(reported, sandbox::ReadExitReport(child));
  }
  if (reported) {
    result.end.status = *reported;
    result.end.reported = true;
  } else if (init_status) {
    result.end.status = *init_status;
  }
  MP_TRY(result.end.stats, sandbox::FinishLeaf(child.leaf, std::chrono::seconds(10)));
  return result;
}

}  // namespace mp::testing

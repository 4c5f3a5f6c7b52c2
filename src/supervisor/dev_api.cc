#include "supervisor/dev_api.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "common/random_id.h"

namespace mp::supervisor {
namespace {

Result<void> WriteFile(const std::string& path, const std::string& content, mode_t mode,
                       gid_t gid) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd) return ErrnoError("open \"" + path + "\"");
  if (::fchown(fd.get(), 0, gid) != 0 || ::fchmod(fd.get(), mode) != 0) {
    return ErrnoError("chown/chmod \"" + path + "\"");
  }
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("write \"" + path + "\"");
    done += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace

Result<DevApi> StartDevApi(const DevApiOptions& o) {
  if (o.uid == 0) return PlainError("dev API: refusing to run monkeyproof-api as root");
  if (::access(o.api_path.c_str(), X_OK) != 0) {
    return ErrnoError("dev API: \"" + o.api_path + "\" (build the monkeyproof-api target)");
  }
  DevApi api;
  MP_TRY(api.token, common::RandomId(common::kHexAlphabet, 64));  // 256 bits
  api.token_file = o.dir + "/api-token";
  MP_RETURN_IF_ERROR(WriteFile(api.token_file, api.token + "\n", 0640, o.gid));
  const std::string config = o.dir + "/api.conf";
  MP_RETURN_IF_ERROR(WriteFile(config, "# dev mode: flags and defaults only\n", 0644, o.gid));

  // Everything the child needs is computed before fork.
  std::vector<std::string> args = {o.api_path,    "--config",     config,
                                   "--listen",    o.listen,       "--control-socket",
                                   o.socket_path, "--token-file", api.token_file};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  char path_env[] = "PATH=/usr/bin:/bin";
  char* envp[] = {path_env, nullptr};
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("dev API: fork");
  if (pid == 0) {
    // Only async-signal-safe calls from here on. The parent-death signal is set after the
    // uid change, which clears it (credentials(7)); the getppid() check closes the window in
    // which the supervisor could have died before it was set.
    // The supervisor blocks the signals its signalfd reads; exec keeps the mask, and the API
    // must see SIGTERM.
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(o.gid, o.gid, o.gid) != 0 ||
        ::setresuid(o.uid, o.uid, o.uid) != 0) {
      ::_exit(126);
    }
    if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || ::getppid() != parent) ::_exit(126);
    ::execve(argv[0], argv.data(), envp);
    ::_exit(127);
  }
  api.pid = pid;
  api.pidfd = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!api.pidfd) return ErrnoError("dev API: pidfd_open");
  return api;
}

}  // namespace mp::supervisor

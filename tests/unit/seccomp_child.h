// Runs a seccomp probe in a forked child under no_new_privs (which needs no root) and reports
// what the child saw: the probe's {ret, errno} over a pipe, or the signal that killed it. Shared
// by the seccomp unit tests; test code only.
#pragma once

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "sandbox/seccomp.h"

namespace mp::sandbox {

struct Probe {
  long ret = 0;
  int err = 0;
};

// Captures errno right after a raw call.
inline Probe Sys(long ret) { return {ret, ret < 0 ? errno : 0}; }

struct Outcome {
  bool reported = false;  // the probe ran and wrote its result
  Probe probe;
  int exit_code = -1;   // when the child exited
  int term_signal = 0;  // when a signal killed it
};

// Child exit codes for setup failures (the probe did not run).
inline constexpr int kExitNnpFailed = 90;
inline constexpr int kExitInstallFailed = 91;

// fork; child: no core dumps (SIGSYS dumps core by default), no_new_privs, then the filter
// (if any), then the probe. Returns what the parent saw.
template <typename F>
Outcome RunInChild(const SeccompProgram* prog, F probe) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {};
  const pid_t pid = ::fork();
  if (pid < 0) return {};
  if (pid == 0) {
    ::close(fds[0]);
    const rlimit no_core = {0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(kExitNnpFailed);
    if (prog != nullptr && InstallSeccompInChild(prog->fprog()) != 0) {
      ::_exit(kExitInstallFailed);
    }
    const Probe p = probe();
    (void)!::write(fds[1], &p, sizeof p);
    ::_exit(0);
  }
  ::close(fds[1]);
  Outcome out;
  Probe p;
  ssize_t n;
  do {
    n = ::read(fds[0], &p, sizeof p);
  } while (n < 0 && errno == EINTR);
  ::close(fds[0]);
  if (n == static_cast<ssize_t>(sizeof p)) {
    out.reported = true;
    out.probe = p;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) out.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) out.term_signal = WTERMSIG(status);
  return out;
}

inline std::string Describe(const Outcome& o) {
  if (o.term_signal != 0) return std::string("killed by ") + ::strsignal(o.term_signal);
  if (!o.reported) return "no report, exit " + std::to_string(o.exit_code);
  return "ret " + std::to_string(o.probe.ret) + " errno " + std::to_string(o.probe.err) + " (" +
         ::strerrordesc_np(o.probe.err) + ")";
}

}  // namespace mp::sandbox

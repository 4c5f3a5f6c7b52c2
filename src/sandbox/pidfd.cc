#include "sandbox/pidfd.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#ifndef P_PIDFD
#define P_PIDFD 3  // glibc 2.36 headers may lack it; the kernel has had it since 5.4
#endif

namespace mp::sandbox {

WaitStatus DecodeWaitStatus(int status) {
  WaitStatus w;
  if (WIFEXITED(status)) {
    w.exited = true;
    w.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    w.signal = WTERMSIG(status);
    w.core_dumped = WCOREDUMP(status);
  }
  return w;
}

Result<void> PidFd::SendSignal(int sig) const {
  // glibc 2.36's <sys/pidfd.h> lacks extern "C", so C++ cannot link its wrapper.
  if (::syscall(SYS_pidfd_send_signal, fd_.get(), sig, nullptr, 0) < 0) {
    // ESRCH: already exited (perhaps not yet reaped); nothing left to signal.
    if (errno == ESRCH) return Ok();
    return ErrnoError("pidfd_send_signal(pid " + std::to_string(pid_) + ", " + std::to_string(sig) +
                      ")");
  }
  return Ok();
}

Result<std::optional<WaitStatus>> PidFd::Wait(bool nohang) {
  if (reaped_) return PlainError("pid " + std::to_string(pid_) + " was already reaped");
  siginfo_t info{};
  for (;;) {
    const int rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd_.get()), &info,
                            WEXITED | (nohang ? WNOHANG : 0));
    if (rc == 0) break;
    if (errno == EINTR) continue;
    return ErrnoError("waitid(P_PIDFD, pid " + std::to_string(pid_) + ")");
  }
  if (info.si_pid == 0) return std::optional<WaitStatus>();  // WNOHANG and still running
  reaped_ = true;
  WaitStatus w;
  if (info.si_code == CLD_EXITED) {
    w.exited = true;
    w.code = info.si_status;
  } else {
    w.signal = info.si_status;
    w.core_dumped = info.si_code == CLD_DUMPED;
  }
  return std::optional<WaitStatus>(w);
}

}  // namespace mp::sandbox

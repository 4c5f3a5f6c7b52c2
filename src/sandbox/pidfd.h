// PidFd: a process named by pid and pidfd together. Signals go through
// pidfd_send_signal and waits through waitid(P_PIDFD), so a recycled pid can
// never be hit. Supervisor side; not thread-safe per object; move-only.
#pragma once

#include <sys/types.h>

#include <optional>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::sandbox {

struct WaitStatus {
  bool exited = false;  // true: `code` is the exit status; false: killed by `signal`
  int code = 0;
  int signal = 0;
  bool core_dumped = false;
};

class PidFd {
 public:
  PidFd() = default;
  PidFd(pid_t pid, UniqueFd fd) : pid_(pid), fd_(std::move(fd)) {}

  pid_t pid() const { return pid_; }
  int fd() const { return fd_.get(); }  // readable (EPOLLIN) once the process exited
  bool valid() const { return fd_.valid(); }

  Result<void> SendSignal(int sig) const;
  // Reaps the process; blocks unless `nohang`, then returns nullopt while it runs.
  Result<std::optional<WaitStatus>> Wait(bool nohang = false);

 private:
  pid_t pid_ = -1;
  UniqueFd fd_;
  bool reaped_ = false;
};

// Decodes a waitpid() status word.
WaitStatus DecodeWaitStatus(int status);

}  // namespace mp::sandbox

#include "common/unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

namespace mp {

void UniqueFd::Reset(int fd) {
  (void)Close();
  fd_ = fd;
}

Result<void> UniqueFd::Close() {
  if (fd_ < 0) return Ok();
  const int fd = std::exchange(fd_, -1);
  // Never retry: Linux frees the descriptor even if close() fails with EINTR,
  // and a retry could close a descriptor another thread just got.
  if (::close(fd) != 0 && errno != EINTR) {
    return ErrnoError("close(fd " + std::to_string(fd) + ")");
  }
  return Ok();
}

Result<std::pair<UniqueFd, UniqueFd>> MakePipe(int extra_flags) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | extra_flags) != 0) return ErrnoError("pipe2");
  return std::pair<UniqueFd, UniqueFd>{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace mp

// UniqueFd: move-only owner of one file descriptor.
// Used by every process (supervisor, API, tests). Close() retries nothing on
// EINTR: on Linux the descriptor is released even when close() reports EINTR.
// Not thread-safe per object.
#pragma once

#include <utility>

#include "common/result.h"

namespace mp {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { (void)Close(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership; the caller must close the returned fd.
  [[nodiscard]] int Release() { return std::exchange(fd_, -1); }
  // Closes the held fd (if any) and takes ownership of `fd`.
  void Reset(int fd = -1);
  // Closes now; reports the close() error, which matters for written files.
  Result<void> Close();

 private:
  int fd_ = -1;
};

// pipe2(O_CLOEXEC | extra_flags) as two owners: {read end, write end}.
Result<std::pair<UniqueFd, UniqueFd>> MakePipe(int extra_flags = 0);

}  // namespace mp

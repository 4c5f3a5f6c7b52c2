// OutputStage: exactly-once output across a SIGKILL of the supervisor, for a session's pipe
// streams (stdout, stderr). A memfd, kept in systemd's fd store with the session's other fds
// ("<id>.stage"), holds the one chunk on its way from a pipe to the transcript: splice(2) moves
// it out of the pipe into the memfd in one syscall, so a kill leaves every byte either in the
// pipe or in the memfd, never in neither; the next supervisor finishes what the dead one left
// (RecoverStaged). Used only where something survives the supervisor (the fd store on); the
// PTY master is read as before (docs/architecture.md, "What a kill -9 can cost"). Supervisor
// only; single-threaded (the loop's thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/messages.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "supervisor/output_log.h"

namespace mp::supervisor {

// The memfd's layout: a 32-byte header ("MPSTAGE1", the log offset the staged bytes take
// u64le, the stream u8, zeros), then the staged bytes. Their count is the file's size minus
// the header: splice extends the file by exactly what it took from the pipe.
inline constexpr size_t kStageHeaderBytes = 32;

class OutputStage {
 public:
  // A new, empty stage (memfd_create "mp-stage-<id>", close-on-exec).
  static Result<OutputStage> Create(std::string_view session_id);
  // The stage an earlier supervisor stored (from the fd store); checked to be a regular file.
  static Result<OutputStage> Adopt(UniqueFd fd);

  // Moves up to `max` bytes (1..) from the pipe `pipe_fd` into the stage for log offset `at`,
  // and copies them into `buf` (room for `max`). Returns the count; 0 is end of file (the pipe
  // is empty and has no writer). EAGAIN: the pipe is empty. The caller appends the bytes to
  // the log and then calls Clear. Errors leave nothing consumed from the pipe, except a failed
  // copy into `buf` (then the bytes stay staged for the next supervisor; the caller stops
  // staging).
  Result<size_t> Take(int pipe_fd, wire::OutputStream stream, uint64_t at, uint8_t* buf,
                      size_t max);
  // The staged bytes are in the log: the stage is empty again.
  Result<void> Clear();

  // What the stage holds now (a supervisor killed between Take and Clear): nullopt when empty.
  struct Staged {
    uint64_t offset = 0;
    wire::OutputStream stream = wire::OutputStream::kStdout;
    std::vector<uint8_t> bytes;
  };
  Result<std::optional<Staged>> Pending() const;

  [[nodiscard]] int fd() const { return fd_.get(); }

 private:
  explicit OutputStage(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  uint8_t header_[kStageHeaderBytes] = {};
};

// A PTY session's queue: one pipe, opened for reading and writing through one descriptor (the
// ends of pipe2 reopened O_RDWR through /proc/self/fd), nonblocking and close-on-exec, so that
// one fd in the store keeps it whole. Capacity: the pipe's default (64 KiB, one chunk).
Result<UniqueFd> CreatePtyQueue();
// The queue an earlier supervisor stored: checked to be a pipe, made nonblocking.
Result<UniqueFd> AdoptPtyQueue(UniqueFd fd);

// Before a terminal chunk is taken: when the queue `queue` is empty, moves up to `max` bytes
// from the PTY master `master` (nonblocking) into it. splice(2) reads the terminal into the
// pipe's pages in one syscall, bounded by the room the pipe has, so a kill leaves each byte in
// the terminal or in the queue; the chunk then goes from the queue through the stage (Take) as
// a pipe's does. A queue that already holds bytes (a killed supervisor's) is not filled.
// Returns what the queue holds now; 0 is the terminal's end of file. Errors carry splice's
// errno: EAGAIN, the terminal has nothing to read; EIO, its last slave closed; anything else
// (EINVAL: a kernel that cannot splice a terminal) is the queue's failure.
Result<size_t> FillPtyQueue(int master, int queue, size_t max);

// What RecoverStaged did with a stage's bytes, for the journal.
struct StageRecovery {
  enum class Outcome {
    kEmpty,     // nothing was staged
    kWritten,   // the log held them already (killed after the append)
    kAppended,  // the log ended where they start, or in them (a torn record): the rest written
    kUnplaced,  // the log disagrees with the stage: dropped, and said so in `note`
  };
  Outcome outcome = Outcome::kEmpty;
  uint64_t offset = 0;   // where the staged bytes belong
  uint64_t written = 0;  // bytes written to the log now
  uint64_t lines = 0;    // newlines among them
  std::string note;      // one line for the journal; empty for kEmpty
};

// Puts what a stage holds into the log of its session, exactly once, then clears the stage.
// `log` was just reopened (OutputLog::Open truncated a torn last record, keeping its range
// reserved). With n bytes staged for offset T, the log's total L and the end of what the log
// holds on disk H:
//   - H == T+n and the log's [T, T+n) are the staged bytes: they were written (kWritten);
//   - T <= H < T+n, L <= T+n and [T, H) matches: [H, T+n) is written (kAppended; H == L == T
//     is the kill before the append, H < L a torn record);
//   - L < T (the log lost its tail): written at T, [L, T) stays a gap readers see (kAppended,
//     with a note);
//   - anything else (the log holds bytes past T+n, or different bytes): nothing is written,
//     `note` says what disagreed (kUnplaced).
// Errors: the stage or the log could not be read or written (the stage is left as it was).
Result<StageRecovery> RecoverStaged(OutputStage& stage, OutputLog& log);

}  // namespace mp::supervisor

// OutputLog: one session's output as a single byte-offset sequence across
// stdout, stderr and the PTY. Recent output is held in a bounded in-memory
// ring; everything is appended to an on-disk transcript under the state
// directory, split into segments so that when the transcript passes its cap
// the oldest segment is deleted and its range becomes a gap. Reads work from
// any offset still held, live or after the session ended, and after a
// restart (Open of an existing directory). Memory stays bounded whatever the
// session prints. Supervisor only; not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/messages.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::supervisor {

struct OutputLogOptions {
  size_t ring_bytes = 1 << 20;                  // in-memory tail, bytes
  uint64_t transcript_max_bytes = 64ull << 20;  // on-disk cap, bytes (all segments)
  uint32_t segments = 8;                        // cap / segments = one segment's size
};

class OutputLog {
 public:
  // Creates `dir` (mode 0700) for a new session's transcript; fails if it holds one.
  static Result<std::unique_ptr<OutputLog>> Create(const std::string& dir,
                                                   const OutputLogOptions& options);
  // Reopens a transcript written by an earlier run (read-only use after restart
  // is typical, but Append works too). Rebuilds offsets and gaps from disk.
  static Result<std::unique_ptr<OutputLog>> Open(const std::string& dir,
                                                 const OutputLogOptions& options);

  ~OutputLog();  // closes files; keeps them on disk
  OutputLog(const OutputLog&) = delete;
  OutputLog& operator=(const OutputLog&) = delete;

  // Appends bytes; returns the offset of their first byte. Never blocks on a
  // reader. A disk error is returned (the bytes are still in the ring and the
  // range is recorded as a gap on disk), so the caller can log it; the bytes
  // took their offsets all the same: [total() before the call, total() after).
  Result<uint64_t> Append(wire::OutputStream stream, const uint8_t* data, size_t length);
  // Append at `offset` instead of total(), for a recovery after a crash (output_stage.h):
  // `offset` >= held_end() (nothing held from there on) and offset + length >= total(); total()
  // becomes offset + length. It fills the range Open reserved for a torn last record, or leaves
  // [total(), offset) a gap. EINVAL when the log holds bytes at or past `offset`, or the ring is
  // not empty and `offset` is not total().
  Result<uint64_t> AppendAt(uint64_t offset, wire::OutputStream stream, const uint8_t* data,
                            size_t length);

  // Reads up to `limit` (1..wire::kMaxChunkBytes) bytes from `since`: chunks in
  // offset order with their streams (adjacent same-stream bytes merged; a chunk
  // may be split at `limit`), the gaps met on the way (clipped to [since, next)),
  // and the offset to ask for next. At most wire::kMaxReadChunks chunks and
  // kMaxReadGaps gaps. `since` == total returns nothing with next = total;
  // `since` beyond the end is an error (ERANGE) naming both numbers. `ended` is
  // left false: the session knows that, not the log.
  Result<wire::OutputRead> Read(uint64_t since, uint32_t limit) const;

  // The first offset still held anywhere (ring or transcript).
  uint64_t first_held() const;
  uint64_t total() const { return total_; }  // bytes appended so far = next offset
  // One past the last byte held (ring or transcript); below total() when the log ends in a gap
  // (a torn last record whose range Open reserved, a failed write).
  uint64_t held_end() const;
  // Flushes the transcript to disk (fdatasync); called when the session ends.
  Result<void> Sync();
  // Removes the directory and everything in it.
  Result<void> RemoveFiles();

  // Frees the in-memory tail when the transcript holds all of it (no failed write and no
  // segment dropped within its range); reads then come from disk. Returns false, keeping the
  // ring, when the ring has bytes the disk lacks. For ended sessions, whose records stay.
  bool ReleaseRing();

  size_t memory_bytes() const;  // ring plus index, for the bounded-memory tests

  // What Open repaired or could not read (torn last record truncated, corrupt
  // segment tail, unreadable file), one line each with the file, byte position
  // and offsets, for the caller to log. Empty after Create.
  const std::vector<std::string>& recovery_notes() const;

 private:
  friend class OutputLogTestPeer;  // tests/unit/output_log_test.cc: fault injection
  // Test-only, reached through OutputLogTestPeer: the next `count` transcript
  // writes fail with `errnum`, after really writing half of the record when `partial`.
  void FailWritesForTest(int errnum, int count, bool partial);

  struct Impl;
  explicit OutputLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  uint64_t total_ = 0;
};

}  // namespace mp::supervisor

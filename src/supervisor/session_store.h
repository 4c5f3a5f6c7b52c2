// SessionStore: the durable side of sessions under the state directory:
//   sessions/<id>/record.json   the SessionInfo, replaced atomically on every change
//   sessions/<id>/output/       the transcript (output_log.h)
// It writes records, recovers them after a restart (a session that was running is marked
// ended by supervisor_restart), removes a forgotten session's files, and decides retention
// (which ended sessions to forget when too many or too large) and expiry (when an ended
// session's time to live runs out). Supervisor only; single-threaded; blocking file I/O on
// small files (records are a few KiB).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/messages.h"
#include "common/result.h"
#include "supervisor/output_log.h"

namespace mp::supervisor {

struct RetentionLimits {
  size_t max_ended_records = 500;                // ended sessions kept for inspection
  uint64_t max_ended_output_bytes = 8ull << 30;  // transcript bytes kept for ended sessions
};

// One session as retention sees it, in creation order.
struct RetentionEntry {
  std::string id;
  bool ended = false;
  uint64_t held_output_bytes = 0;  // transcript bytes still on disk
};

// The ended sessions to forget, oldest first, until both limits hold.
std::vector<std::string> RetentionVictims(const std::vector<RetentionEntry>& in_creation_order,
                                          const RetentionLimits& limits);

// How long until an ended session expires: ended_at + ttl - now, at least 0 (wall-clock ms).
std::chrono::milliseconds ExpiryDelay(uint64_t ended_at_ms, std::chrono::milliseconds ttl,
                                      uint64_t now_ms);

// Milliseconds since the epoch (the records' clock).
uint64_t WallClockMs();

// Replaces `path` with `text` so a reader sees the old file or the whole new one: written to
// `path`.tmp (mode 0600, never through a symlink), fdatasync'd, then renamed over `path`.
Result<void> WriteFileAtomic(const std::string& path, const std::string& text);

class SessionStore {
 public:
  explicit SessionStore(std::string state_dir) : state_dir_(std::move(state_dir)) {}

  [[nodiscard]] std::string SessionDir(const std::string& id) const;
  // mkdir sessions/<id> (0700); fails if it exists.
  Result<void> CreateSessionDir(const std::string& id) const;
  // Writes the record atomically (temp file, fdatasync, rename). Failures are logged: a
  // record that cannot be written must not end the session.
  void Write(const wire::SessionInfo& info) const;
  // The same, returning the failure (a new session's first record: without it, no start).
  Result<void> TryWrite(const wire::SessionInfo& info) const;
  // Removes the record, the transcript (through `log` when it is open) and the directory.
  void Remove(const std::string& id, OutputLog* log) const;

  struct Recovered {
    wire::SessionInfo info;
    std::unique_ptr<OutputLog> log;  // nullptr when the transcript cannot be opened
  };
  // Creates sessions/ if needed and reads every record, in creation order. A record that
  // cannot be read is logged and left on disk. Sessions without an end record get one
  // (supervisor_restart) and are written back, except those in `to_adopt` (their fds came
  // back from systemd's store): the caller adopts them or ends them with EndAsRestart.
  Result<std::vector<Recovered>> Recover(const std::set<std::string>& to_adopt = {}) const;
  // Gives a session that was running an end record: supervisor_restart, with `detail`.
  static void EndAsRestart(wire::SessionInfo& info, std::string detail);

 private:
  std::string state_dir_;
};

}  // namespace mp::supervisor

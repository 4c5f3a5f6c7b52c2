// The names monkeyproofd gives a session's fds in systemd's fd store: "<session-id>.<kind>".
// The protocol itself (the notify socket, the store, LISTEN_FDS) is common/sd_daemon.h, which
// the API uses too; its names are brought in here for the supervisor's code. Pure functions
// (fuzzed: tests/fuzz/listen_fds_fuzz.cc).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/sd_daemon.h"

namespace mp::supervisor::sd {

using mp::sd::IsValidFdName;
using mp::sd::kListenFdsStart;
using mp::sd::kMaxFdNameBytes;
using mp::sd::kMaxFdsPerMessage;
using mp::sd::ListenedFd;
using mp::sd::Notifier;

// The most fds monkeyproofd takes from LISTEN_FDS: every live session's (kMaxFdsPerSession
// each) with room to spare; more is an error, not an allocation.
inline constexpr size_t kMaxListenFds = 65536;

// --- A session's fds in the store ----------------------------------------------------------

enum class FdKind {
  kPidfd,     // init's pidfd
  kStatus,    // the supervisor's end of the handshake socket: init's exit report arrives there
  kIn,        // stdin's write end (pipes)
  kOut,       // stdout's read end (pipes)
  kErr,       // stderr's read end (pipes)
  kPty,       // the PTY master (a terminal session: its input and output)
  kStage,     // the output stage (output_stage.h): the chunk on its way from a pipe to the log
  kPtyQueue,  // a PTY session's queue (output_stage.h): its chunk between the master and stage
};
// A session stores at most this many: pidfd, status, in, out, err, stage (a PTY session
// stores 5: pidfd, status, pty, stage, ptyq).
inline constexpr size_t kMaxFdsPerSession = 6;

// "pidfd", "status", "in", "out", "err", "pty", "stage", "ptyq"
std::string_view ToString(FdKind kind);
// "<session-id>.<kind>", e.g. "s-01J4AB.out".
std::string FdName(std::string_view session_id, FdKind kind);
struct ParsedFdName {
  std::string session_id;
  FdKind kind;
};
// The inverse of FdName; nullopt for any other name (another program's, an older format).
std::optional<ParsedFdName> ParseFdName(std::string_view name);

}  // namespace mp::supervisor::sd

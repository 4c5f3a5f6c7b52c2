// systemd's service protocol as monkeyproofd speaks it, without libsystemd: the notify socket
// ($NOTIFY_SOCKET: READY=1, WATCHDOG=1, and the file-descriptor store: FDSTORE=1 with the fds
// as SCM_RIGHTS, FDSTOREREMOVE=1) and the fds systemd hands back at start (LISTEN_PID,
// LISTEN_FDS, LISTEN_FDNAMES, the protocol of sd_listen_fds_with_names(3)). Also the names the
// supervisor gives a session's fds in the store: "<session-id>.<kind>". Supervisor only; the
// parsers are pure (fuzzed: tests/fuzz/listen_fds_fuzz.cc); Notifier is not thread-safe.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::supervisor::sd {

// A datagram to the notify socket carries at most this many fds (the kernel's SCM_MAX_FD).
inline constexpr size_t kMaxFdsPerMessage = 253;
// systemd's limit on a stored fd's name (FDNAME_MAX); names are printable ASCII without ':'.
inline constexpr size_t kMaxFdNameBytes = 255;
// The most fds ParseListenFds accepts from LISTEN_FDS (more is an error, not an allocation).
inline constexpr size_t kMaxListenFds = 65536;
// The first fd systemd passes (SD_LISTEN_FDS_START).
inline constexpr int kListenFdsStart = 3;

// $NOTIFY_SOCKET: an absolute path, or "@name" for the abstract namespace.
struct NotifyAddress {
  struct sockaddr_un addr {};
  socklen_t len = 0;
};
Result<NotifyAddress> ParseNotifyAddress(std::string_view value);

// One datagram socket aimed at the notify socket. Sends block at most `kSendTimeoutMs` (PID 1
// reads its queue promptly; a wedged manager must not wedge the supervisor's loop for long).
class Notifier {
 public:
  static constexpr int kSendTimeoutMs = 2000;

  // nullopt when NOTIFY_SOCKET is unset or empty (not run by systemd).
  static Result<std::optional<Notifier>> FromEnvironment();
  static Result<Notifier> Connect(std::string_view notify_socket);

  // One message ("READY=1", "FDSTORE=1\nFDNAME=x", ...) with `fds` attached (SCM_RIGHTS).
  Result<void> Send(std::string_view state, std::span<const int> fds = {}) const;
  // FDSTORE=1 + FDNAME=`name` + FDPOLL=0 with `fd`: systemd keeps a copy under `name` and
  // does not drop it when it becomes readable or hung up (a pipe whose writer exited, a
  // pidfd of an exited process must stay).
  Result<void> StoreFd(std::string_view name, int fd) const;
  // FDSTOREREMOVE=1 + FDNAME=`name`: systemd closes its copies stored under `name`.
  Result<void> RemoveFd(std::string_view name) const;

 private:
  Notifier(UniqueFd sock, NotifyAddress address) : sock_(std::move(sock)), address_(address) {}
  UniqueFd sock_;
  NotifyAddress address_;
};

// systemd's rule for a stored fd's name: at most 255 bytes of printable ASCII, no ':' (the
// separator of LISTEN_FDNAMES).
bool IsValidFdName(std::string_view name);

struct ListenedFd {
  int fd = -1;
  std::string name;  // "unknown" when LISTEN_FDNAMES is unset, as systemd documents
};

// The fds systemd passed, from the values of LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES
// (nullptr: unset) for the process `self`. Empty when LISTEN_PID is unset or names another
// process, or LISTEN_FDS is unset or 0. Errors: a value that is not a decimal number, more than
// kMaxListenFds, a name count that differs from LISTEN_FDS, an invalid name.
Result<std::vector<ListenedFd>> ParseListenFds(const char* listen_pid, const char* listen_fds,
                                               const char* listen_fdnames, pid_t self);
// ParseListenFds on this process's environment; then unsets the three variables (children
// must not take them for theirs) and marks every passed fd close-on-exec. On a parse error
// the variables are unset too and no fd is touched.
Result<std::vector<ListenedFd>> TakeListenFds();

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

// systemd's service protocol without libsystemd, for both daemons: the notify socket
// ($NOTIFY_SOCKET: READY=1, WATCHDOG=1, and the file-descriptor store: FDSTORE=1 with the fds
// as SCM_RIGHTS, FDSTOREREMOVE=1) and the fds systemd hands a process at start (LISTEN_PID,
// LISTEN_FDS, LISTEN_FDNAMES, the protocol of sd_listen_fds_with_names(3)): a socket unit's
// sockets and the stored fds. monkeyproofd keeps its sessions' fds in the store
// (supervisor/sd_notify.h names them); monkeyproof-api takes its Unix and TCP listening sockets
// from a socket unit and keeps its TCP ones in the store across a restart
// (http/listen_fds.h). The parsers are pure (fuzzed: tests/fuzz/listen_fds_fuzz.cc); Notifier
// is not thread-safe.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::sd {

// A datagram to the notify socket carries at most this many fds (the kernel's SCM_MAX_FD).
inline constexpr size_t kMaxFdsPerMessage = 253;
// systemd's limit on an fd's name (FDNAME_MAX); names are printable ASCII without ':'.
inline constexpr size_t kMaxFdNameBytes = 255;
// The first fd systemd passes (SD_LISTEN_FDS_START).
inline constexpr int kListenFdsStart = 3;

// $NOTIFY_SOCKET: an absolute path, or "@name" for the abstract namespace.
struct NotifyAddress {
  struct sockaddr_un addr {};
  socklen_t len = 0;
};
Result<NotifyAddress> ParseNotifyAddress(std::string_view value);

// One datagram socket aimed at the notify socket. Sends block at most `kSendTimeoutMs` (PID 1
// reads its queue promptly; a wedged manager must not wedge the caller's loop for long).
class Notifier {
 public:
  static constexpr int kSendTimeoutMs = 2000;

  // nullopt when NOTIFY_SOCKET is unset or empty (not run by systemd, or a unit without
  // NotifyAccess=).
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

// systemd's rule for an fd's name: at most 255 bytes of printable ASCII, no ':' (the separator
// of LISTEN_FDNAMES). The empty name is valid.
bool IsValidFdName(std::string_view name);

struct ListenedFd {
  int fd = -1;
  std::string name;  // "unknown" when LISTEN_FDNAMES is unset, as systemd documents
};

struct ListenedFds {
  std::vector<ListenedFd> fds;  // kListenFdsStart, kListenFdsStart + 1, ...
  // Why variables that are set were not taken (LISTEN_PID names another process, or is unset
  // while LISTEN_FDS is set): a warning's text. Empty when taken, or when none was set.
  std::string ignored;
};

// The fds systemd passed to process `self`, from the values of LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES (nullptr: unset). Strict: LISTEN_PID and LISTEN_FDS are plain decimal numbers
// (digits only, no sign or blank; LISTEN_PID not 0), LISTEN_FDS at most `max_fds` (more is an
// error, not an allocation), LISTEN_FDNAMES (when set) exactly one valid name per fd; anything
// else is an error that names the variable. No fds (and no error): LISTEN_PID unset or another
// process's (`ignored` says so when LISTEN_FDS is set), LISTEN_FDS unset or 0.
Result<ListenedFds> ParseListenFds(const char* listen_pid, const char* listen_fds,
                                   const char* listen_fdnames, pid_t self, size_t max_fds);

// ParseListenFds on this process's environment; unsets the three variables whatever the outcome
// (nothing this process starts may take them for its own) and marks every passed fd
// close-on-exec. On a parse error no fd is touched. Call it before any thread starts (unsetenv).
Result<ListenedFds> TakeListenFds(size_t max_fds);

}  // namespace mp::sd

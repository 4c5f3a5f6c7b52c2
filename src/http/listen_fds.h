// The listening sockets systemd hands monkeyproof-api at start (socket activation: the package's
// monkeyproof-api.socket, the protocol of sd_listen_fds(3)): LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES, read without libsystemd. The API takes only listening Unix stream sockets this
// way and serves them as it serves listen_unix (http/unix_listener.h); anything else passed is
// a start error. ParseListenFds is pure (fuzzed: tests/fuzz/api_listen_fds_fuzz.cc); the other
// functions look at this process's fds and environment. Runs in monkeyproof-api at start, before
// any other thread (setenv/unsetenv).
//
// (monkeyproofd reads the same variables for its fd store, supervisor/sd_notify.h; the API may
// not link the supervisor's code, cmake/TrustBoundary.cmake, hence a parser of its own.)
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::http {

// The first fd systemd passes (SD_LISTEN_FDS_START).
inline constexpr int kListenFdsStart = 3;
// The most fds the API takes: a socket unit for it has one ListenStream= line, or a few. More is
// an error, not an allocation.
inline constexpr size_t kMaxListenFds = 64;
// systemd's limit on an fd's name (FDNAME_MAX); names are printable ASCII without ':'.
inline constexpr size_t kMaxListenFdNameBytes = 255;

struct ListenFd {
  int fd = -1;
  std::string name;  // LISTEN_FDNAMES' entry ("monkeyproof-api.socket"); "unknown" without it
};

struct ListenFds {
  std::vector<ListenFd> fds;  // kListenFdsStart, kListenFdsStart + 1, ...
  // Why variables that are set were not taken (LISTEN_PID names another process, or is unset
  // while LISTEN_FDS is set): a warning's text. Empty when taken, or when none was set.
  std::string ignored;
};

// A name systemd may put in LISTEN_FDNAMES: at most kMaxListenFdNameBytes of printable ASCII
// without ':' (the empty name included).
bool IsValidListenFdName(std::string_view name);

// The fds passed to process `self`, from the values of LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES
// (nullptr: unset). Strict: LISTEN_PID and LISTEN_FDS are plain decimal numbers (digits only, no
// sign or blank; LISTEN_PID not 0), LISTEN_FDS at most kMaxListenFds, LISTEN_FDNAMES (when set)
// exactly one valid name per fd; anything else is an error. No fds (and no error): LISTEN_PID
// unset or another process's (`ignored` says so when LISTEN_FDS is set), LISTEN_FDS unset or 0.
Result<ListenFds> ParseListenFds(const char* listen_pid, const char* listen_fds,
                                 const char* listen_fdnames, pid_t self);

// `fd` is a listening Unix stream socket (SO_DOMAIN AF_UNIX, SO_TYPE SOCK_STREAM,
// SO_ACCEPTCONN); the error says what it is instead, and which socket unit setting gives that.
Result<void> CheckListeningUnixStream(int fd);

// A Unix socket systemd passed, ready to be served (UnixListener::Adopt).
struct InheritedUnixSocket {
  UniqueFd fd;
  std::string name;  // its LISTEN_FDNAMES entry
  std::string path;  // getsockname: the file ("/run/monkeyproof-api/api.sock"), "@name" for an
                     // abstract address, empty when unnamed
};

// ParseListenFds on this process's environment; unsets the three variables whatever the outcome
// (nothing this process starts may take them for its own). Then every fd must pass
// CheckListeningUnixStream; each is marked close-on-exec and owned by the result. On an error no
// fd is owned (they stay open: systemd's copies are what matter). `ignored` as ParseListenFds'.
struct InheritedUnixSockets {
  std::vector<InheritedUnixSocket> sockets;
  std::string ignored;
};
Result<InheritedUnixSockets> TakeInheritedUnixSockets();

}  // namespace mp::http

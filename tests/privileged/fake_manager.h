// systemd's side of monkeyproofd's fd store, played by a privileged test: the notify socket
// the daemon sends READY=1, FDSTORE=1 (with FDNAME= and FDPOLL=0) and FDSTOREREMOVE=1 to, the
// store it keeps, and the hand-back to the next daemon (LISTEN_PID, LISTEN_FDS,
// LISTEN_FDNAMES, fds from 3) as systemd does on a restart. Used by fd_store_test and by
// supervisor_test's SIGKILL survival test. Runs in the test process, as root in the test VM;
// single-threaded.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/unique_fd.h"

namespace mp::testing {

class FakeManager {
 public:
  // Binds a datagram socket at `notify_path` (removed first): the daemon's NOTIFY_SOCKET.
  explicit FakeManager(std::string notify_path);

  // Reads one message within `ms`; applies FDSTORE/FDSTOREREMOVE to the store. False: none.
  bool Receive(int ms);
  // Reads what has arrived (the daemon's sends wait while the socket's short queue is full).
  void Drain();
  // Reads until `done` or `ms` pass without a message.
  void ReceiveUntil(const std::function<bool()>& done, int ms = 20000);
  std::set<std::string> StoredNames() const;
  bool Said(const std::string& text) const;

  // In a forked child about to exec the daemon: puts the store's fds at 3.. and sets
  // NOTIFY_SOCKET and, when the store holds any, LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES.
  void PassToChild() const;

  std::vector<std::string> messages;
  std::vector<std::pair<std::string, UniqueFd>> store;  // in the order stored
  std::map<std::string, int> removals;

 private:
  std::string path_;
  UniqueFd sock_;
};

}  // namespace mp::testing

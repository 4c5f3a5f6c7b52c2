// SessionFdStore: the fds of running sessions kept in systemd's file-descriptor store, so that
// they outlive a restart of the supervisor (docs/architecture.md, "Durability"). A session
// stores its pidfd, its handshake socket (init's exit report) and its stdio ends when it starts
// running, drops stdin's write end when stdin is closed (else the stored copy would keep the
// pipe open and the command would never read end of file), and drops the rest when it ends.
// Supervisor only; single-threaded (the loop's thread). Sends block at most
// sd::Notifier::kSendTimeoutMs each.
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "supervisor/sd_notify.h"

namespace mp::supervisor {

class SessionFdStore {
 public:
  explicit SessionFdStore(sd::Notifier notifier) : notifier_(std::move(notifier)) {}

  // Stores each fd under "<id>.<kind>". On a failure the fds stored so far stay (Remove*
  // drops them) and the error names the first fd that failed.
  Result<void> Store(const std::string& id, const std::vector<std::pair<sd::FdKind, int>>& fds);
  // Records fds an earlier run stored for a session that this run adopted (they are in the
  // store already, under their names: nothing is sent), so that Remove* drops them.
  void Adopt(const std::string& id, const std::vector<sd::FdKind>& kinds);
  // Drops one stored fd of a session (nothing when it was not stored).
  void Remove(const std::string& id, sd::FdKind kind);
  // Drops every fd the session stored.
  void RemoveAll(const std::string& id);
  // Drops fds stored by an earlier run, by name (they are not in this object's list).
  void RemoveName(const std::string& name);

  [[nodiscard]] size_t stored() const;  // fds stored now, all sessions
  [[nodiscard]] const sd::Notifier& notifier() const { return notifier_; }

 private:
  sd::Notifier notifier_;
  std::map<std::string, std::set<sd::FdKind>> stored_;
};

}  // namespace mp::supervisor

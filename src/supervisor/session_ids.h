// Per-session host ids: every live session runs as a uid (and gid, the same number) of its
// own, taken from session_uid_range in monkeyproof.conf, so the kernel's per-uid pools
// (RLIMIT_NPROC, inotify instances, pipe and key quotas) never cross sessions. An id is
// held for as long as the session's cgroup leaf exists; it is free again only once the leaf
// is gone, which a restarted supervisor also sees (it seeds the pool from the processes of
// the leaves it finds). Supervisor side; single-threaded.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mp::supervisor {

// session_uid_range: FIRST-LAST inclusive; empty (`off`): sessions run as their policy's
// run_as user and share its per-uid pools.
struct IdRange {
  uint32_t first = 0;
  uint32_t count = 0;
  [[nodiscard]] uint32_t last() const { return first + count - 1; }
  [[nodiscard]] bool Contains(uint64_t id) const { return id >= first && id - first < count; }
  [[nodiscard]] std::string Text() const;  // "FIRST-LAST"
};

// Parses "FIRST-LAST" (decimal, FIRST <= LAST). Refused: ids below 1000, the overflow ids
// 65534 and 65535, and 4294967295 (-1).
Result<IdRange> ParseIdRange(std::string_view text);

// The databases the range must not overlap, as the start check reads them.
struct IdDatabases {
  std::vector<std::pair<std::string, uint32_t>> users;   // name, uid (passwd)
  std::vector<std::pair<std::string, uint32_t>> groups;  // name, gid (group)
  std::string subuid_text;                               // /etc/subuid ("" when absent)
  std::string subgid_text;                               // /etc/subgid
};
// getpwent/getgrent (every NSS source that enumerates) and /etc/subuid, /etc/subgid.
IdDatabases ReadSystemIdDatabases();

// Fails naming every overlap (a user, a group, a subordinate range with its owner) and how to
// fix it, or when the range holds fewer ids than `max_sessions`.
Result<void> CheckIdRange(const IdRange& range, const IdDatabases& db, uint64_t max_sessions);

class SessionIdPool {
 public:
  // `leaf_exists(name)`: whether the session leaf of that name is still there.
  SessionIdPool(IdRange range, std::function<bool(const std::string& leaf)> leaf_exists);

  // Records an id held by a leaf found at start (restart): it stays taken until that leaf
  // is gone. Ids outside the range are ignored.
  void Seed(uint32_t id, const std::string& leaf);
  // The lowest free id for the session whose leaf will be `leaf` (created right after, on
  // the same thread). Ids whose leaf is gone are freed first. Fails when every id is held.
  Result<uint32_t> Acquire(const std::string& leaf);
  [[nodiscard]] size_t held() const { return held_.size(); }
  [[nodiscard]] const IdRange& range() const { return range_; }

 private:
  void FreeGone();

  IdRange range_;
  std::function<bool(const std::string&)> leaf_exists_;
  std::map<uint32_t, std::string> held_;  // id → leaf name
};

// The real uids of the processes in the leaves below `sessions_dir` (a cgroup directory), as
// (uid, leaf name) pairs, for SessionIdPool::Seed.
std::vector<std::pair<uint32_t, std::string>> UidsOfLeaves(const std::string& sessions_dir);

}  // namespace mp::supervisor

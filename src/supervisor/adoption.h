// Adoption: what a restarted supervisor needs to take over a session that kept running while
// no supervisor did (issue 16; docs/architecture.md, "Re-adoption after a restart"). Two
// halves:
//   - the adoption record, sessions/<id>/adopt.json, written when the session starts running:
//     the record format, init's pid, when the command started running (the deadlines' start)
//     and the effective limits the watchdog and the output log apply. A record of another
//     format (a downgrade, an upgrade that changed it) is refused, and the session ended.
//   - the fds systemd hands back from its store, grouped by session ("<id>.<kind>"), and
//     turned into a SpawnedChild: the leaf reopened, the pidfd checked against the record
//     (the stored one, else pidfd_open of init's pid checked against the leaf's cgroup.procs).
// Supervisor only; blocking file I/O on small files, before the loop serves anyone.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "sandbox/cgroup.h"
#include "sandbox/spawn.h"
#include "supervisor/policy.h"
#include "supervisor/sd_notify.h"

namespace mp::supervisor {

// The adoption record's format. Bump it when the record, the fds a session stores or their
// meaning change: a supervisor refuses sessions recorded in another format and ends them.
// Whatever the format, the fds named out, err and pty stay the session's output (a pipe's
// read end, the PTY master), stage an output stage with its own header (output_stage.h) and
// ptyq a PTY queue: a supervisor that refuses a session still saves its output from them
// (SessionManager::SalvageOutput). A new format must keep that.
inline constexpr uint32_t kAdoptionFormat = 1;

struct AdoptionRecord {
  uint32_t format = kAdoptionFormat;
  pid_t init_pid = 0;             // the sandbox's pid 1, in the host's pid namespace
  uint64_t running_since_ms = 0;  // wall clock: the command started running (deadlines' start)
  bool pty = false;               // one PTY master instead of three pipes
  // The effective policy's parts a running session still needs: its name (messages), the
  // deadlines and the output limits (watchdog, output log).
  std::string policy_name;
  PolicyDeadlines deadlines;
  PolicyOutput output;
  // An "allowlist" session's allow list as it started (issue 14): the next supervisor hands
  // its listeners to monkeyproof-egress again with this list, never with the policy file's
  // current one (a reload never widens a running session). Absent for the other modes. An
  // optional member, not a new format: a supervisor that does not know it adopts the session
  // without a handover, and the session's connections fail closed.
  std::optional<std::vector<std::string>> egress_allow;
  // Its credential gateway's endpoints as it started, without secrets: the next supervisor
  // reads those again from its credentials_dir (a key rotated meanwhile is the new one).
  std::vector<GatewayEndpoint> egress_gateway;
};

std::string AdoptionRecordPath(const std::string& session_dir);
// Writes sessions/<id>/adopt.json atomically.
Result<void> WriteAdoptionRecord(const std::string& session_dir, const AdoptionRecord& record);
// Reads it back. Errors: missing ("written by a supervisor without re-adoption"), unreadable,
// or of another format (naming both formats).
Result<AdoptionRecord> ReadAdoptionRecord(const std::string& session_dir);
// The text and its parser, apart from the file (unit tests).
std::string AdoptionRecordToJson(const AdoptionRecord& record);
Result<AdoptionRecord> AdoptionRecordFromJson(const std::string& text);

// A session's fds as systemd handed them back, by kind. Owns them.
struct StoredFds {
  std::map<sd::FdKind, UniqueFd> fds;
  std::vector<std::string> names;  // the names they came under, to release them from the store
};
// Groups the passed fds by session; takes ownership of those with a session's name and
// returns the others in `foreign` (another program's name), for the caller to close and
// release. A second fd under a session's name is closed (the first one is the session's).
std::map<std::string, StoredFds> GroupStoredFds(const std::vector<sd::ListenedFd>& listened,
                                                std::vector<sd::ListenedFd>* foreign);

// The pid a pidfd refers to (/proc/self/fdinfo's "Pid:"), -1 once the process has been
// reaped. Errors when `fd` is not a pidfd.
Result<pid_t> PidOfPidfd(int fd);

// Builds the child of a session to adopt from its record and stored fds (duplicated from
// `stored`, which keeps its own, so that a refused session's fds are all still there): the leaf
// reopened under `root`, init's pidfd (the stored one, which must refer to record.init_pid or to a
// process that has already been reaped; else pidfd_open of record.init_pid, which must be in the
// leaf's cgroup.procs), the status socket, and the stdio ends the record's mode needs (stdin may be
// missing: it was closed). The error says what was missing or did not match.
Result<sandbox::SpawnedChild> AdoptChild(const sandbox::CgroupRoot& root, const std::string& id,
                                         const AdoptionRecord& record, StoredFds& stored);

}  // namespace mp::supervisor

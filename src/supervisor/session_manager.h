// SessionManager: every session's state machine, owned by the supervisor's
// event loop. It spawns through the policy (policy.h) and the sandbox
// (spawn.h), watches each session's fds (output pipes or PTY, init's pidfd,
// memory.events, pids.events) and deadlines on the loop, records output in an
// OutputLog, pumps it to subscribers without ever blocking on them, enforces
// the watchdog (wall, idle, output rate, OOM, pids limit: SIGTERM to the tree,
// a grace period, then cgroup.kill), keeps durable records under the state
// directory, and recovers after a restart. It makes the syscalls; the
// dispatcher makes none. Single-threaded: call only on the loop's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/messages.h"
#include "sandbox/cgroup.h"
#include "supervisor/audit_log.h"
#include "supervisor/control_server.h"
#include "supervisor/event_loop.h"
#include "supervisor/output_log.h"
#include "supervisor/policy.h"

namespace mp::supervisor {

// The value, or the error the dispatcher turns into a response.
template <typename T>
using Answer = std::variant<T, wire::ErrorBody>;

// Where live events go (the ControlServer in the daemon, a fake in tests).
class EventSink {
 public:
  virtual ~EventSink() = default;
  // False while the connection's outbox is over its soft limit.
  virtual bool CanSend(uint64_t connection) const = 0;
  virtual void Send(uint64_t connection, const wire::Event& event) = 0;
};

struct ManagerOptions {
  std::string state_dir;                         // sessions/<id>/record.json and output/
  size_t max_sessions = 50;                      // starting + running (MAX_SESSIONS)
  size_t max_ended_records = 500;                // ended sessions kept for inspection
  uint64_t max_ended_output_bytes = 8ull << 30;  // transcripts kept for ended sessions
  std::chrono::milliseconds ended_ttl{3600000};  // SESSION_TTL_MS
  std::chrono::milliseconds interactive_ended_ttl{7200000};  // INTERACTIVE_SESSION_TTL_MS
  std::chrono::milliseconds kill_grace{3000};                // SIGTERM → cgroup.kill
  size_t stdin_buffer_bytes = 1 << 20;                       // queued stdin per session
  SpawnHost host = SystemSpawnHost();
  std::string supervisor_version;
};

class SessionManager {
 public:
  SessionManager(EventLoop& loop, sandbox::CgroupRoot cgroup_root, PolicySet policies,
                 ManagerOptions options, EventSink& sink, AuditLog& audit);
  ~SessionManager();

  // On start: loads records, marks sessions that were running as ended by
  // supervisor_restart, and kills and removes every leaf left in the cgroup root.
  Result<void> Recover();

  Answer<wire::SessionInfo> Spawn(const wire::SpawnRequest& request, const PeerInfo& peer);
  wire::SessionList List(const wire::ListRequest& request) const;
  Answer<wire::SessionInfo> Get(const std::string& id) const;
  // Ends a running session (killed_by_request); for an ended one, reports it as it is.
  Answer<wire::SessionInfo> Kill(const std::string& id, const PeerInfo& peer);
  Answer<std::monostate> Signal(const std::string& id, int signo, const PeerInfo& peer);
  Answer<std::monostate> Stdin(const std::string& id, const std::vector<uint8_t>& data,
                               const PeerInfo& peer);
  Answer<std::monostate> CloseStdin(const std::string& id, const PeerInfo& peer);
  Answer<std::monostate> Resize(const std::string& id, wire::PtySize size, const PeerInfo& peer);
  // The checks Subscribe makes, without subscribing (so a response can go first).
  Answer<std::monostate> CheckSubscribe(const std::string& id, std::optional<uint64_t> since) const;
  Answer<std::monostate> Subscribe(uint64_t connection, const std::string& id,
                                   std::optional<uint64_t> since);
  Answer<std::monostate> Unsubscribe(uint64_t connection, const std::string& id);
  Answer<wire::OutputRead> ReadOutput(const std::string& id, uint64_t since, uint32_t limit) const;
  // One page of the loaded policies in name order (wire::PolicyPage).
  wire::PolicyList Policies(const wire::PoliciesRequest& req) const;
  [[nodiscard]] size_t PolicyCount() const { return policies_.all().size(); }
  wire::HealthInfo Health() const;

  void OnDisconnect(uint64_t connection);
  void OnDrained(uint64_t connection);
  // SIGHUP: all files valid → swap; else keep the old set and return the errors.
  Result<void> ReloadPolicies();
  // Shutdown: kill every running session (reason supervisor_restart) and finish it.
  void KillAll();

  size_t active_count() const { return active_; }

 private:
  struct Session;
  struct Subscription {
    uint64_t next = 0;  // next offset to send
    bool exit_sent = false;
  };

  Session* Find(const std::string& id) const;
  void Register(Session& s);
  void OnOutput(Session& s, int fd, wire::OutputStream stream);
  void OnInitExit(Session& s);
  void OnCgroupEvent(Session& s, bool memory);
  void FlushStdin(Session& s);
  void BeginKill(Session& s, wire::EndReason reason, bool immediate);
  void Finish(Session& s);
  void Pump(Session& s, uint64_t connection, Subscription& sub);
  void PumpAll(Session& s);
  void ResetIdleTimer(Session& s);
  void WriteRecord(const Session& s);
  void ScheduleExpiry(Session& s);
  void Forget(const std::string& id);
  void EnforceRetention();
  void Audit(std::string_view action, const std::string& session, const PeerInfo& peer,
             std::string_view outcome, std::string_view detail);
  std::string SessionDir(const std::string& id) const;
  uint64_t DrainFd(Session& s, int fd, wire::OutputStream stream, bool until_eof);

  EventLoop& loop_;
  sandbox::CgroupRoot cgroup_root_;
  PolicySet policies_;
  ManagerOptions options_;
  EventSink& sink_;
  AuditLog& audit_;
  std::unordered_map<std::string, std::unique_ptr<Session>> sessions_;
  std::vector<std::string> order_;  // creation order
  size_t active_ = 0;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

wire::ErrorBody MakeError(wire::ErrorCode code, std::string message, std::string field = {});

}  // namespace mp::supervisor

// SessionManager: the request-facing side of sessions. It keeps the ids, the capacity
// (starting + running sessions), lookup in creation order, the policy set, the audit trail,
// and calls into Session (one session's lifetime: session.h) and SessionStore (records,
// recovery, retention, expiry: session_store.h). A spawn answers through a callback once the
// child has reported (or failed): nothing here waits for a child. The dispatcher makes no
// syscalls; this and the files it calls do. Single-threaded: call only on the loop's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/messages.h"
#include "egress/verdict_report.h"
#include "http/audit_throttle.h"
#include "sandbox/cgroup.h"
#include "supervisor/audit_log.h"
#include "supervisor/control_server.h"
#include "supervisor/egress_link.h"
#include "supervisor/event_loop.h"
#include "supervisor/output_log.h"
#include "supervisor/policy.h"
#include "supervisor/session.h"
#include "supervisor/session_ids.h"
#include "supervisor/session_store.h"

namespace mp::supervisor {

struct ManagerOptions {
  std::string state_dir;                         // sessions/<id>/record.json and output/
  size_t max_sessions = 50;                      // starting + running (MAX_SESSIONS)
  size_t max_ended_records = 500;                // ended sessions kept for inspection
  uint64_t max_ended_output_bytes = 8ull << 30;  // transcripts kept for ended sessions
  std::chrono::milliseconds ended_ttl{3600000};  // SESSION_TTL_MS
  std::chrono::milliseconds interactive_ended_ttl{7200000};  // INTERACTIVE_SESSION_TTL_MS
  std::chrono::milliseconds kill_grace{3000};                // SIGTERM → cgroup.kill
  std::chrono::milliseconds spawn_timeout{30000};            // clone → the command runs
  std::chrono::milliseconds leaf_cleanup{5000};              // init gone → leaf removed
  size_t stdin_buffer_bytes = 1 << 20;                       // queued stdin per session
  SpawnHost host = SystemSpawnHost();
  std::string supervisor_version;
  // systemd's fd store (not owned; nullptr: off). With it, running sessions outlive the
  // supervisor: spawns set SpawnRequest::outlive_supervisor, each running session keeps its
  // fds in the store, and the daemon stops with Detach instead of KillAll.
  SessionFdStore* fd_store = nullptr;
  // Test hook: spawns whose task is exactly this (non-empty) text stall before their child
  // reports (sandbox::SpawnRequest::stall_before_start_report). Empty in production.
  std::string test_stall_spawn_task;
  // Test hook: pipe output is read and appended without the staging memfd (Session::Shared::
  // stage_output), so that a kill -9 loses output again: the control of the privileged test.
  // False in production.
  bool test_no_output_staging = false;
  // monkeyproof-egress's handover socket, for "allowlist" sessions (egress_link.h).
  std::string egress_socket = "/run/monkeyproof-egress/handover.sock";
  // session_uid_range: every live session gets a uid and gid of its own from it, held until
  // its leaf is gone (session_ids.h); empty: sessions run as their policy's run_as.
  std::optional<IdRange> session_ids;
};

// Egress audit lines per minute: per session and in all (docs/api.md "Audit log").
inline constexpr http::AuditThrottleLimits kEgressAuditLimits{600, 6000, std::chrono::seconds(60),
                                                              4096, 20};
inline constexpr http::AuditThrottleLimits kEgressDnsAuditLimits{60, 600, std::chrono::seconds(60),
                                                                 4096, 20};

// The `client` of egress audit lines: the egress daemon (its pid and uid are the peer's).
inline constexpr char kEgressAuditClient[] = "monkeyproof-egress";

// Adds one verdict to `counters`: a DNS answer to dns_answered/dns_refused, anything else to
// allowed/denied and its bytes, an allowed gateway verdict to gateway_requests too.
void CountEgressVerdict(const egress::VerdictReport& report, wire::EgressCounters& counters);
// The audit line of one verdict (docs/api.md "Audit log", action `egress`): kind, name, port,
// verdict, then reason (deny) or bytes_up and bytes_down (an allowed connection). Its views
// point into `report`.
AuditEntry EgressAuditEntry(const egress::VerdictReport& report, const EgressPeer& peer);

class SessionManager {
 public:
  SessionManager(EventLoop& loop, sandbox::CgroupRoot cgroup_root, PolicySet policies,
                 ManagerOptions options, EventSink& sink, AuditLog& audit);
  ~SessionManager();

  // On start: loads records and re-adopts the sessions that ran on while no supervisor did,
  // from `listened` (the fds systemd's store passed back, when the fd store is on) and their
  // adoption records (adoption.h). Sessions that were running and could not be adopted are
  // ended as supervisor_restart (the detail says why), and every leaf in the cgroup root that
  // no adopted session owns is killed and removed. Those sessions' fds are closed and released
  // from the store. Returns the fds that are no session's (or all of them, with the store
  // off), for the caller to close and release.
  Result<std::vector<sd::ListenedFd>> Recover(const std::vector<sd::ListenedFd>& listened = {});

  // Answers through `done`, exactly once: at once for a request that is refused, later from
  // the loop once the child runs or its start failed (then with the session's info in state
  // failed, end reason spawn_error naming the step).
  using SpawnDone = std::function<void(const Answer<wire::SessionInfo>&)>;
  void Spawn(const wire::SpawnRequest& request, const PeerInfo& peer, SpawnDone done);
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
  // Writes what the API saw or did itself (token_create, token_revoke, read, auth_failed,
  // rate_limited, audit_suppressed) to the audit log.
  void AuditApiAction(const wire::AuditRequest& request, const PeerInfo& peer);

  void OnDisconnect(uint64_t connection);
  void OnDrained(uint64_t connection);
  // SIGHUP: all files valid → swap; else keep the old set and return the errors.
  Result<void> ReloadPolicies();
  // Shutdown: kill every running session (reason supervisor_restart) and finish it.
  void KillAll();
  // Shutdown with the fd store: running sessions are left running (their fds are in the
  // store, and they no longer have a parent-death signal); sessions still starting or already
  // ending are finished as KillAll does.
  void Detach();

  size_t active_count() const { return active_; }

  // One verdict monkeyproof-egress reported (EgressLink): counted in the session's record and
  // the totals, and written to the audit log as an `egress` line, throttled per session
  // (kEgressAuditLimits for connections, kEgressDnsAuditLimits for DNS answers) with one
  // audit_suppressed line per session and window for what was held back. Reports of sessions
  // this supervisor does not know, or that are not allowlist sessions, are ignored. Public
  // for tests.
  void OnEgressReport(const egress::VerdictReport& report, const EgressPeer& peer);
  // Writes the egress throttles' summaries of ended windows (the timer calls it; tests too).
  void FlushEgressAudit(std::chrono::steady_clock::time_point now);
  // Starts the timer that writes the held-back egress lines' summaries, unless it runs.
  void ArmEgressAuditFlush();

 private:
  Session* Find(const std::string& id) const;
  // Looks a session up; the not_found error names the id.
  Answer<Session*> Lookup(const std::string& id) const;
  void OnStarted(Session& s, const PeerInfo& peer, const std::string& preset, SpawnDone& done);
  void OnEnded(Session& s);
  // Adopts one recovered session that was running (Recover); the error says why not.
  Result<void> Adopt(SessionStore::Recovered& r, StoredFds& fds);
  // A session that could not be adopted: its processes killed and its leaf removed, then what
  // its stored output fds hold (the stage, the PTY queue, the pipes or the terminal, to their
  // end) appended to its transcript, so that ending it loses no byte it wrote. Returns the
  // bytes saved.
  uint64_t SalvageOutput(SessionStore::Recovered& r, StoredFds& fds);
  void ScheduleExpiry(Session& s);
  void Forget(const std::string& id);
  // Forgets the oldest ended sessions beyond the limits; `in_callback` (the session whose
  // callback is running, or nullptr) is forgotten later, from the loop, if it is one of them.
  void EnforceRetention(const Session* in_callback);
  // KillAll (keep_running false) and Detach (true).
  void EndForShutdown(bool keep_running);
  // One audit line; `fields` are the action's own members (docs/api.md "Audit log").
  void Audit(std::string_view action, const std::string& session, const PeerInfo& peer,
             std::string_view outcome, std::vector<AuditField> fields = {});

  EventLoop& loop_;
  sandbox::CgroupRoot cgroup_root_;
  PolicySet policies_;
  ManagerOptions options_;
  AuditLog& audit_;
  SessionStore store_;
  std::optional<SessionIdPool> id_pool_;  // options_.session_ids
  Session::Shared shared_;
  EgressLink egress_;
  std::unordered_map<std::string, std::unique_ptr<Session>> sessions_;
  std::unordered_map<std::string, EventLoop::TimerId> expiry_timers_;
  EventLoop::TimerId retention_timer_ = 0;
  std::vector<std::string> order_;  // creation order
  size_t active_ = 0;
  uint32_t readopted_ = 0, readoption_failures_ = 0;           // at Recover
  wire::EgressCounters egress_totals_;                         // every session, since this start
  http::AuditThrottle egress_audit_{kEgressAuditLimits};       // allowed connections
  http::AuditThrottle egress_deny_audit_{kEgressAuditLimits};  // refused connections
  http::AuditThrottle egress_dns_audit_{kEgressDnsAuditLimits};
  std::optional<EventLoop::TimerId> egress_flush_timer_;
  EgressPeer egress_peer_;  // the daemon of the last report, for the summaries' lines
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace mp::supervisor

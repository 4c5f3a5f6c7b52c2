// Session: one session's lifetime, from the spawn request to its end record. It owns the
// sandboxed child (while it starts, then while it runs), the output log, the subscriptions
// of control connections, the stdin queue, the watchdog and every fd and timer it put on
// the event loop. States: starting (cloned; the handshake socket and a start deadline are
// watched) → running (output fds, init's pidfd, memory.events and pids.events watched) →
// ending (init gone; cgroup.events watched until the leaf is empty) → ended (record final).
// Nothing here blocks: every wait is an fd or a timer on the loop. The destructor removes
// the session's fds and timers, so callbacks may capture `this`. The output side (reads under
// the watchdog's rate budget, the throttle's pauses, subscribers) is in session_output.cc.
// Supervisor only; single-threaded (the loop's thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/messages.h"
#include "sandbox/cgroup.h"
#include "sandbox/spawn.h"
#include "supervisor/adoption.h"
#include "supervisor/event_loop.h"
#include "supervisor/fd_store.h"
#include "supervisor/output_log.h"
#include "supervisor/output_stage.h"
#include "supervisor/policy.h"
#include "supervisor/session_store.h"
#include "supervisor/watchdog.h"

namespace mp::supervisor {

// The value, or the error the dispatcher turns into a response.
template <typename T>
using Answer = std::variant<T, wire::ErrorBody>;

wire::ErrorBody MakeError(wire::ErrorCode code, std::string message, std::string field = {});

// Where live events go (the ControlServer in the daemon, a fake in tests).
class EventSink {
 public:
  virtual ~EventSink() = default;
  // False while the connection's outbox is over its soft limit.
  virtual bool CanSend(uint64_t connection) const = 0;
  virtual void Send(uint64_t connection, const wire::Event& event) = 0;
};

class Session {
 public:
  struct Shared {  // what every session of one manager uses; outlives the sessions
    EventLoop& loop;
    EventSink& sink;
    std::chrono::milliseconds kill_grace;    // SIGTERM → cgroup.kill
    std::chrono::milliseconds leaf_cleanup;  // init gone → leaf empty, before giving up
    size_t stdin_buffer_bytes;               // queued stdin per session
    // systemd's fd store: a running session's fds are kept there (fd_store.h); nullptr: off.
    SessionFdStore* fd_store = nullptr;
    // With fd_store: pipe output goes through a staging memfd kept in the store, so that a
    // SIGKILL of the supervisor neither loses nor repeats a byte (output_stage.h). False only
    // in the privileged tests' control (MONKEYPROOFD_TEST_NO_OUTPUT_STAGING).
    bool stage_output = true;
  };
  struct Callbacks {
    // The spawn has an outcome: running, or ended (spawn_error, or killed while starting).
    std::function<void(Session&)> on_started;
    // The session has ended and its end record is final (also after a failed start).
    std::function<void(Session&)> on_ended;
  };

  // A new session (state starting) with its output log.
  Session(Shared& shared, wire::SessionInfo info, EffectivePolicy policy,
          std::unique_ptr<OutputLog> log);
  // A session recovered from its record: already ended.
  Session(Shared& shared, wire::SessionInfo info, std::unique_ptr<OutputLog> log);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Clones the sandbox and watches the handshake; `callbacks` run later, from the loop
  // (on_started exactly once, on_ended once the session has ended). If the clone itself
  // fails, the session ends as spawn_error before Start returns (both callbacks run).
  void Start(const sandbox::CgroupRoot& root, const sandbox::SpawnRequest& request,
             std::chrono::milliseconds start_timeout, Callbacks callbacks);

  // Takes over a session that ran on while no supervisor did (its fds from systemd's store,
  // already there under its name: nothing is stored again). Running from here as if it had
  // never been left: output is read on from the transcript's end, the deadlines count from
  // `record.running_since_ms`, the idle deadline from now. A command that ended meanwhile ends
  // the session at once with init's report (on_ended may run before Adopt returns). The
  // session was constructed with the effective policy rebuilt from the record. `stage`: the
  // output stage it stored (nullopt: none, e.g. stored by a supervisor without one); what it
  // holds goes into the transcript first (RecoverStaged), then what the PTY queue `pty_queue`
  // holds (invalid: none stored), and reading goes on through them.
  void Adopt(sandbox::SpawnedChild child, const AdoptionRecord& record, Callbacks callbacks,
             std::optional<OutputStage> stage, UniqueFd pty_queue);
  // What a restarted supervisor needs to adopt this running session (adoption.h).
  [[nodiscard]] AdoptionRecord AdoptionInfo() const;

  // Ends the session: `kGraceful` sends SIGTERM to init and cgroup.kill after the grace
  // period, `kImmediate` cgroup.kill now. The first reason given is the one recorded.
  void BeginKill(wire::EndReason reason, KillMode mode);
  // Shutdown, first pass: kills the leaf (or aborts the start) without waiting, so every
  // session dies at once. Second pass: KillNow finishes synchronously (waits up to
  // leaf_cleanup for init, then up to leaf_cleanup for the leaf to empty).
  void KillForShutdown();
  void KillNow(wire::EndReason reason);

  Answer<std::monostate> Signal(int signo);
  Answer<std::monostate> QueueStdin(const std::vector<uint8_t>& data);
  Answer<std::monostate> CloseStdin();
  Answer<std::monostate> Resize(wire::PtySize size);

  Answer<std::monostate> CheckSubscribe(std::optional<uint64_t> since) const;
  void Subscribe(uint64_t connection, std::optional<uint64_t> since);
  void Unsubscribe(uint64_t connection) { subs_.erase(connection); }
  void OnDrained(uint64_t connection);
  Answer<wire::OutputRead> ReadOutput(uint64_t since, uint32_t limit) const;

  [[nodiscard]] const wire::SessionInfo& info() const { return info_; }
  // An allowlist session's egress counters (set at its start or adoption; nullptr for other
  // sessions). Kept in memory only: the stored record does not carry them.
  wire::EgressCounters* egress() { return info_.egress ? &*info_.egress : nullptr; }
  [[nodiscard]] const std::string& id() const { return info_.id; }
  [[nodiscard]] bool ended() const { return ended_; }
  [[nodiscard]] bool starting() const { return pending_.has_value(); }
  [[nodiscard]] bool has_process() const { return pending_ || child_; }
  [[nodiscard]] bool running() const { return !NotRunning().has_value(); }
  [[nodiscard]] OutputLog* log() const { return log_.get(); }

 private:
  struct Subscription {
    uint64_t next = 0;  // next offset to send
    bool exit_sent = false;
  };

  // wrong_state when the session does not run a command now (starting, ending, ended).
  std::optional<wire::ErrorBody> NotRunning() const;
  void OnHandshake();
  void OnStartTimeout(std::chrono::milliseconds timeout);
  void FailStart(const Error& error);
  void OnAbortedInitExit();
  void OnRunning();
  // The running state's watches: output fds, init's pidfd, the leaf's event files, and the
  // watchdog counting from `start` (armed unless `arm` is false).
  void WatchRunning(Watchdog::Clock::time_point start, bool arm);
  void Watch(int fd, uint32_t events, EventLoop::FdCallback callback);
  void Unwatch(int fd);
  void UnwatchAll();
  // Opens a leaf's "*.events" file into `slot` and watches it (EPOLLPRI on change).
  // Puts the running child's fds into shared_.fd_store, if any.
  void StoreFds();
  void WatchEventFile(const char* name, CgroupEventSource source, UniqueFd& slot);
  wire::OutputStream StreamOf(int fd) const;
  // Registers an output fd that has not reached end of file with what it needs now: EPOLLIN
  // unless output is paused, EPOLLOUT for a terminal with input waiting; with neither it is
  // off the loop ("parked").
  void UpdateOutputWatch(int fd);
  void OnOutput(int fd, wire::OutputStream stream);
  // Reads up to `limit` bytes into the log (kReadsPerWakeup reads at most, unless `limit` is
  // Watchdog::kUnlimited: then until end of file); pipes through stage_ when there is one.
  uint64_t DrainFd(int fd, wire::OutputStream stream, uint64_t limit);
  // One chunk of at most `max` bytes from `fd` into `buf` (read, or staged); as read(2).
  ssize_t TakeChunk(int fd, wire::OutputStream stream, uint8_t* buf, size_t max);
  // Creates stage_ for a pipe session whose fds go to the store (before they are stored).
  void CreateStage();
  // Stops staging (an error of the stage): the chunks go back to read + append.
  void DropStage(const Error& why);
  // Appends what the PTY queue holds to the log (through the stage when `staged`); returns the
  // bytes moved. Empty between callbacks except after a kill.
  uint64_t DrainPtyQueue(bool staged);
  // The throttle: stop reading output until the watchdog's resume time, then read again.
  void PauseOutput(Watchdog::Clock::time_point now);
  void ResumeOutput();
  void OnCgroupEvent(CgroupEventSource source);
  void OnVerdict(const Verdict& verdict) { BeginKill(verdict.reason, verdict.mode); }
  void FlushStdin();
  void OnInitExit();
  void CollectInitExit();
  void BeginLeafCleanup();
  void OnLeafEvent();
  void Finish(const Result<sandbox::CgroupStats>& stats);
  void Pump(uint64_t connection, Subscription& sub);
  void PumpAll();
  void CancelTimers();

  Shared& shared_;
  wire::SessionInfo info_;
  std::optional<EffectivePolicy> policy_;
  std::unique_ptr<OutputLog> log_;
  Callbacks callbacks_;
  std::optional<sandbox::PendingSpawn> pending_;  // starting
  std::optional<sandbox::SpawnedChild> child_;    // running and ending
  std::optional<OutputStage> stage_;  // output's staging memfd (fd store on), in the store
  UniqueFd pty_queue_;                // a PTY session's queue in front of stage_, in the store
  uint64_t backlog_exempt_ = 0;       // output waiting at re-adoption: not rate-counted
  std::optional<Watchdog> watchdog_;
  std::unique_ptr<WatchdogTimer> watchdog_timer_;
  std::map<uint64_t, Subscription> subs_;
  std::vector<uint8_t> stdin_pending_;
  bool stdin_close_pending_ = false;
  std::optional<wire::EndReason> kill_reason_;
  bool ended_ = false;
  bool init_exited_ = false;
  bool start_reported_ = false;                // on_started has run
  std::optional<std::string> spawn_error_;     // why the start failed
  std::optional<sandbox::WaitStatus> status_;  // the command's, once init has exited
  uint64_t running_since_ms_ = 0;              // wall clock of the command's start
  std::optional<uint64_t> command_ended_ms_;   // wall clock of the command's end (init's report)
  UniqueFd memory_events_, pids_events_, leaf_events_;
  std::vector<int> watched_;  // fds registered with the loop
  std::vector<int> parked_;   // output fds still open but off the loop (output paused)
  bool output_paused_ = false;
  EventLoop::TimerId start_timer_ = 0, grace_timer_ = 0, cleanup_timer_ = 0, resume_timer_ = 0;
};

}  // namespace mp::supervisor

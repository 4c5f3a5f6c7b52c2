#include "supervisor/session.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>

namespace mp::supervisor {
namespace {

using wire::EndReason;
using wire::SessionState;

bool SetNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// A cgroup "*.events" file keeps polling as changed (EPOLLPRI) until it is read through the
// same open file; the content itself is read again from the leaf where it matters.
void AcknowledgeEventFile(int fd) {
  char buf[512];
  while (::pread(fd, buf, sizeof buf, 0) < 0 && errno == EINTR) {
  }
}

// The command's host pid: init's only child.
std::optional<uint32_t> CommandPid(pid_t init) {
  std::ifstream f("/proc/" + std::to_string(init) + "/task/" + std::to_string(init) + "/children");
  uint32_t pid = 0;
  if (f >> pid) return pid;
  return std::nullopt;
}

WatchdogLimits LimitsOf(const Policy& p) {
  WatchdogLimits l;
  l.wall = std::chrono::seconds(p.deadlines.wall_seconds);
  l.idle = std::chrono::seconds(p.deadlines.idle_seconds);
  l.max_rate_bytes_per_second = p.output.max_rate_bytes_per_second;
  l.rate_window = std::chrono::seconds(p.output.max_rate_window_seconds);
  l.on_flood = p.output.on_flood;
  return l;
}

// Which ceiling output_flood hit and how to raise it (the watchdog's rule: more than
// rate * window bytes within one window of `window` seconds, at least 1 s).
std::string FloodDetail(const Policy& p) {
  const uint64_t rate = p.output.max_rate_bytes_per_second;
  const uint64_t window = std::max<uint64_t>(p.output.max_rate_window_seconds, 1);
  return "the session wrote more than " + std::to_string(rate * window) +
         " bytes of output within " + std::to_string(window) +
         " s (output.max_rate_bytes_per_second " + std::to_string(rate) +
         " x output.max_rate_window_seconds " + std::to_string(window) + " of policy \"" + p.name +
         "\"); raise them in the policy (0 turns the ceiling off), or send bulk output to a "
         "file in the workspace";
}

}  // namespace

wire::ErrorBody MakeError(wire::ErrorCode code, std::string message, std::string field) {
  wire::ErrorBody e;
  e.code = code;
  e.message = std::move(message);
  e.field = std::move(field);
  return e;
}

Session::Session(Shared& shared, wire::SessionInfo info, EffectivePolicy policy,
                 std::unique_ptr<OutputLog> log)
    : shared_(shared), info_(std::move(info)), policy_(std::move(policy)), log_(std::move(log)) {}

Session::Session(Shared& shared, wire::SessionInfo info, std::unique_ptr<OutputLog> log)
    : shared_(shared), info_(std::move(info)), log_(std::move(log)), ended_(true) {}

Session::~Session() {
  UnwatchAll();
  CancelTimers();
}

void Session::Watch(int fd, uint32_t events, EventLoop::FdCallback callback) {
  if (fd < 0) return;
  SetNonBlocking(fd);
  if (auto r = shared_.loop.Add(fd, events, std::move(callback))) {
    watched_.push_back(fd);
  } else {
    std::fprintf(stderr, "monkeyproofd: session %s: epoll: %s\n", info_.id.c_str(),
                 r.error().ToString().c_str());
  }
}

void Session::Unwatch(int fd) {
  const auto it = std::find(watched_.begin(), watched_.end(), fd);
  if (it == watched_.end()) return;
  shared_.loop.Remove(fd);
  watched_.erase(it);
}

void Session::UnwatchAll() {
  for (int fd : watched_) shared_.loop.Remove(fd);
  watched_.clear();
  parked_.clear();
}

void Session::CancelTimers() {
  for (auto* t : {&start_timer_, &grace_timer_, &cleanup_timer_, &resume_timer_}) {
    if (*t != 0) shared_.loop.CancelTimer(*t);
    *t = 0;
  }
  if (watchdog_timer_) watchdog_timer_->Cancel();
}

// --- Starting ---------------------------------------------------------------------------

void Session::Start(const sandbox::CgroupRoot& root, const sandbox::SpawnRequest& request,
                    std::chrono::milliseconds start_timeout, Callbacks callbacks) {
  callbacks_ = std::move(callbacks);
  auto started = sandbox::StartSpawn(root, info_.id, request);
  if (!started) {
    FailStart(started.error());
    return;
  }
  for (const auto& note : started->child.notes) {
    std::fprintf(stderr, "monkeyproofd: session %s: %s\n", info_.id.c_str(), note.c_str());
  }
  pending_.emplace(std::move(*started));
  Watch(pending_->child.report.get(), EPOLLIN, [this](uint32_t) { OnHandshake(); });
  start_timer_ = shared_.loop.AddTimer(start_timeout, [this, start_timeout] {
    start_timer_ = 0;
    OnStartTimeout(start_timeout);
  });
}

void Session::OnHandshake() {
  auto state = sandbox::PollHandshake(*pending_);
  if (!state) {
    FailStart(state.error());
    return;
  }
  if (*state == sandbox::HandshakeState::kPending) return;
  Unwatch(pending_->child.report.get());  // read again only for the exit report
  if (start_timer_ != 0) shared_.loop.CancelTimer(start_timer_);
  start_timer_ = 0;
  child_.emplace(std::move(pending_->child));
  pending_.reset();
  OnRunning();
}

void Session::OnStartTimeout(std::chrono::milliseconds timeout) {
  if (!pending_) return;
  FailStart(sandbox::SpawnTimeoutError(*pending_, timeout));
}

void Session::FailStart(const Error& error) {
  if (start_timer_ != 0) shared_.loop.CancelTimer(start_timer_);
  start_timer_ = 0;
  spawn_error_ = error.ToString();
  if (!pending_) {  // nothing was cloned, and StartSpawn removed its leaf
    Finish(sandbox::CgroupStats{});
    return;
  }
  Unwatch(pending_->child.report.get());
  (void)pending_->child.leaf.Kill();
  child_.emplace(std::move(pending_->child));
  pending_.reset();
  // Init dies when the kill reaches it, but a setup step in uninterruptible sleep (a wedged
  // mount) holds it until that syscall returns: its exit is awaited on the loop, bounded.
  Watch(child_->init.fd(), EPOLLIN, [this](uint32_t) { OnAbortedInitExit(); });
  cleanup_timer_ = shared_.loop.AddTimer(shared_.leaf_cleanup, [this] {
    cleanup_timer_ = 0;
    Finish(PlainError("the sandbox init of \"" + child_->leaf.name() +
                      "\" did not die after its cgroup was killed"));
  });
}

void Session::OnAbortedInitExit() {
  Unwatch(child_->init.fd());
  if (cleanup_timer_ != 0) shared_.loop.CancelTimer(cleanup_timer_);
  cleanup_timer_ = 0;
  (void)child_->init.Wait();  // readable pidfd: init has exited, this does not block
  init_exited_ = true;
  BeginLeafCleanup();
}

// --- Running ----------------------------------------------------------------------------

void Session::OnRunning() {
  info_.state = SessionState::kRunning;
  info_.pid = CommandPid(child_->init.pid());
  running_since_ms_ = WallClockMs();
  WatchRunning(Watchdog::Clock::now(), /*arm=*/true);
  StoreFds();
  // An OOM kill or a refused fork between the spawn and the acknowledgements above raised no
  // event we will see: look once now.
  if (memory_events_) OnCgroupEvent(CgroupEventSource::kMemory);
  if (pids_events_) OnCgroupEvent(CgroupEventSource::kPids);
  start_reported_ = true;
  if (callbacks_.on_started) callbacks_.on_started(*this);
}

void Session::WatchRunning(Watchdog::Clock::time_point start, bool arm) {
  auto& c = *child_;
  for (int fd : {c.pty_master.get(), c.stdout_read.get(), c.stderr_read.get()}) {
    if (fd < 0) continue;
    parked_.push_back(fd);
    UpdateOutputWatch(fd);
  }
  if (!c.pty_master && c.stdin_write) SetNonBlocking(c.stdin_write.get());
  Watch(c.init.fd(), EPOLLIN, [this](uint32_t) { OnInitExit(); });
  // memory.events and pids.events raise EPOLLPRI when they change, and keep raising it until
  // the file is read again through the watched descriptor: each callback reads it first, or
  // the (level-triggered) loop would spin.
  WatchEventFile("memory.events", CgroupEventSource::kMemory, memory_events_);
  WatchEventFile("pids.events", CgroupEventSource::kPids, pids_events_);
  watchdog_.emplace(LimitsOf(policy_->policy), start);
  watchdog_timer_ = std::make_unique<WatchdogTimer>(shared_.loop, *watchdog_,
                                                    [this](const Verdict& v) { OnVerdict(v); });
  if (arm) watchdog_timer_->Arm();
}

void Session::StoreFds() {
  if (shared_.fd_store == nullptr) return;
  CreateStage();
  const auto& c = *child_;
  using K = sd::FdKind;
  auto stored = shared_.fd_store->Store(info_.id, {{K::kPidfd, c.init.fd()},
                                                   {K::kStatus, c.report.get()},
                                                   {K::kIn, c.stdin_write.get()},
                                                   {K::kOut, c.stdout_read.get()},
                                                   {K::kErr, c.stderr_read.get()},
                                                   {K::kPty, c.pty_master.get()},
                                                   {K::kStage, stage_ ? stage_->fd() : -1},
                                                   {K::kPtyQueue, pty_queue_.get()}});
  // The session runs on; it will not survive a restart of the supervisor (the next one ends it
  // as supervisor_restart), and a stage nobody keeps is no use.
  if (!stored) {
    std::fprintf(stderr, "monkeyproofd: session %s: %s\n", info_.id.c_str(),
                 stored.error().ToString().c_str());
    stage_.reset();
    pty_queue_.Reset();
  }
}

void Session::WatchEventFile(const char* name, CgroupEventSource source, UniqueFd& slot) {
  auto fd = child_->leaf.OpenEventFile(name);
  if (!fd) return;  // a controller the root does not delegate: no events of that kind
  slot = std::move(*fd);
  AcknowledgeEventFile(slot.get());
  Watch(slot.get(), EPOLLPRI, [this, source, &slot](uint32_t) {
    AcknowledgeEventFile(slot.get());
    OnCgroupEvent(source);
  });
}

void Session::OnCgroupEvent(CgroupEventSource source) {
  if (ended_ || !child_ || init_exited_) return;
  auto stats = child_->leaf.Stats();
  if (!stats) return;
  if (auto v = Watchdog::OnCgroupEvent(source, stats->oom_kill_events, stats->pids_max_events)) {
    OnVerdict(*v);
  }
}

void Session::BeginKill(EndReason reason, KillMode mode) {
  // Once init has exited or the start has failed, the outcome is fixed: nothing to kill.
  if (ended_ || init_exited_ || spawn_error_) return;
  if (!kill_reason_) kill_reason_ = reason;
  if (pending_) {  // starting: the handshake then ends without a report
    (void)pending_->child.leaf.Kill();
    return;
  }
  if (!child_ || init_exited_) return;
  if (mode == KillMode::kImmediate) {
    (void)child_->leaf.Kill();
    return;
  }
  if (grace_timer_ != 0) return;  // already terminating
  // SIGTERM to init, which passes it to every process of the namespace.
  (void)child_->init.SendSignal(SIGTERM);
  grace_timer_ = shared_.loop.AddTimer(shared_.kill_grace, [this] {
    grace_timer_ = 0;
    if (!ended_ && child_ && !init_exited_) (void)child_->leaf.Kill();
  });
}

// --- Ending -----------------------------------------------------------------------------

void Session::OnInitExit() {
  if (ended_ || init_exited_) return;
  CollectInitExit();
  BeginLeafCleanup();
}

void Session::CollectInitExit() {
  auto& c = *child_;
  init_exited_ = true;
  // Init is gone, so the kernel has killed the rest of the namespace: the pipes hold their
  // last bytes and then EOF.
  // What the throttle left in them is read now, whatever the rate: nothing is lost.
  for (int fd : {c.stdout_read.get(), c.stderr_read.get(), c.pty_master.get()}) {
    if (fd < 0) continue;
    const bool open = std::find(watched_.begin(), watched_.end(), fd) != watched_.end() ||
                      std::find(parked_.begin(), parked_.end(), fd) != parked_.end();
    if (open) DrainFd(fd, StreamOf(fd), Watchdog::kUnlimited);
  }
  info_.output_bytes = log_->total();
  // Init's report is the source of the command's status (init is the command's parent);
  // init's own status stands in only when it died before reporting (an OOM kill, cgroup.kill).
  auto report = sandbox::ReadExitReport(c.report.get());
  auto init_status = c.init.Wait();
  if (!report) {
    std::fprintf(stderr, "monkeyproofd: session %s: %s\n", info_.id.c_str(),
                 report.error().ToString().c_str());
  } else if (report->has_value() && (*report)->exited_ms > 0) {
    command_ended_ms_ = static_cast<uint64_t>((*report)->exited_ms);
  }
  status_ = sandbox::CommandEnd(report, init_status);
  UnwatchAll();
  CancelTimers();
}

void Session::BeginLeafCleanup() {
  auto& leaf = child_->leaf;
  if (auto killed = leaf.Kill(); !killed) {
    Finish(std::move(killed).error());
    return;
  }
  auto events = leaf.OpenEventFile("cgroup.events");
  if (!events) {
    Finish(std::move(events).error());
    return;
  }
  leaf_events_ = std::move(*events);
  AcknowledgeEventFile(leaf_events_.get());
  // cgroup.events raises EPOLLPRI when "populated" changes.
  Watch(leaf_events_.get(), EPOLLPRI, [this](uint32_t) { OnLeafEvent(); });
  cleanup_timer_ = shared_.loop.AddTimer(shared_.leaf_cleanup, [this] {
    cleanup_timer_ = 0;
    Finish(PlainError("cgroup \"" + child_->leaf.name() + "\" still populated after kill"));
  });
  OnLeafEvent();  // it may be empty already
}

void Session::OnLeafEvent() {
  if (ended_) return;
  AcknowledgeEventFile(leaf_events_.get());
  sandbox::CgroupStats stats;
  auto emptied = sandbox::LeafEmptied(child_->leaf, &stats);
  if (!emptied) {
    Finish(std::move(emptied).error());
  } else if (*emptied) {
    Finish(stats);
  }
}

void Session::KillForShutdown() {
  if (ended_) return;
  if (pending_) {
    kill_reason_ = EndReason::kSupervisorRestart;
    FailStart(PlainError("the supervisor stopped while the session started"));
  } else if (child_ && !init_exited_ && !spawn_error_) {
    (void)child_->leaf.Kill();
  }
}

void Session::KillNow(EndReason reason) {
  if (ended_) return;
  if (!init_exited_ && !spawn_error_) kill_reason_ = reason;  // else the outcome is fixed
  if (pending_) {
    FailStart(PlainError("the supervisor stopped while the session started"));
    if (ended_) return;
  } else if (!init_exited_) {
    (void)child_->leaf.Kill();
  }
  // Shutdown may wait, but not forever: init is given leaf_cleanup to die.
  struct pollfd pfd = {child_->init.fd(), POLLIN, 0};
  if (!init_exited_ && ::poll(&pfd, 1, static_cast<int>(shared_.leaf_cleanup.count())) > 0) {
    if (spawn_error_) {
      (void)child_->init.Wait();
      init_exited_ = true;
    } else {
      CollectInitExit();  // drains the last output and reaps init
    }
  }
  UnwatchAll();
  CancelTimers();
  Finish(sandbox::FinishLeaf(child_->leaf, shared_.leaf_cleanup));
}

void Session::Finish(const Result<sandbox::CgroupStats>& stats) {
  if (ended_) return;
  UnwatchAll();
  CancelTimers();
  wire::EndRecord end;
  // When the command ended, as init saw it; else now (a start that failed, a killed init).
  end.ended_at_ms = command_ended_ms_.value_or(WallClockMs());
  if (spawn_error_) {
    // The record stays, inspectable, with the step that failed.
    end.reason = kill_reason_.value_or(EndReason::kSpawnError);
    end.detail = *spawn_error_;
    if (!stats) end.detail += "; cgroup cleanup: " + stats.error().ToString();
    info_.state =
        end.reason == EndReason::kSpawnError ? SessionState::kFailed : SessionState::kKilled;
  } else {
    const sandbox::WaitStatus status = status_.value_or(sandbox::WaitStatus{});
    if (status.exited) {
      end.exit_code = status.code;
    } else if (status.signal != 0) {
      end.signal = status.signal;
    }
    if (watchdog_ && watchdog_->throttle_episodes() > 0) {
      end.output_throttled_ms =
          static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    watchdog_->ThrottledFor(Watchdog::Clock::now()))
                                    .count());
    }
    if (stats) {
      end.memory_peak_bytes = stats->memory_peak_bytes;
      end.cpu_usage_usec = stats->cpu_usage_usec;
      end.pids_peak = stats->pids_peak;
      if (!kill_reason_ && stats->oom_kill_events > 0) kill_reason_ = EndReason::kOom;
    } else {
      end.detail = "cgroup cleanup: " + stats.error().ToString();
    }
    end.reason = kill_reason_.value_or(EndReason::kExit);
    if (end.reason == EndReason::kOutputFlood) {
      const std::string flood = policy_ ? FloodDetail(policy_->policy) : std::string();
      end.detail =
          end.detail.empty() || flood.empty() ? flood + end.detail : flood + "; " + end.detail;
    }
    info_.state = end.reason == EndReason::kExit ? SessionState::kExited : SessionState::kKilled;
  }
  info_.end = end;
  info_.output_bytes = log_->total();
  ended_ = true;
  if (shared_.fd_store != nullptr) shared_.fd_store->RemoveAll(info_.id);
  // An ended record keeps its transcript on disk, not its in-memory tail (up to ring_bytes
  // each, for every record kept): readers of an ended session read the disk.
  if (log_->Sync()) (void)log_->ReleaseRing();
  child_.reset();
  stage_.reset();
  pty_queue_.Reset();
  memory_events_.Reset();
  pids_events_.Reset();
  leaf_events_.Reset();
  watchdog_timer_.reset();
  if (callbacks_.on_ended) callbacks_.on_ended(*this);
  PumpAll();  // sends the exit event to subscribers that are caught up
  if (!start_reported_) {
    start_reported_ = true;
    if (callbacks_.on_started) callbacks_.on_started(*this);
  }
}

// --- Requests ---------------------------------------------------------------------------

std::optional<wire::ErrorBody> Session::NotRunning() const {
  if (pending_) {
    return MakeError(wire::ErrorCode::kWrongState, "session " + info_.id + " is still starting",
                     "/session");
  }
  if (ended_ || !child_ || init_exited_ || spawn_error_) {
    return MakeError(wire::ErrorCode::kWrongState, "session " + info_.id + " has ended",
                     "/session");
  }
  return std::nullopt;
}

Answer<std::monostate> Session::Signal(int signo) {
  if (auto refused = NotRunning()) return *refused;
  if (auto r = child_->init.SendSignal(signo); !r) {
    return MakeError(wire::ErrorCode::kInternal, r.error().ToString());
  }
  return std::monostate{};
}

Answer<std::monostate> Session::QueueStdin(const std::vector<uint8_t>& data) {
  if (auto refused = NotRunning()) return *refused;
  if (!child_->pty_master && (!child_->stdin_write || stdin_close_pending_)) {
    return MakeError(wire::ErrorCode::kWrongState, "stdin of session " + info_.id + " is closed",
                     "/session");
  }
  if (stdin_pending_.size() + data.size() > shared_.stdin_buffer_bytes) {
    return MakeError(wire::ErrorCode::kCapacity, "stdin buffer of session " + info_.id +
                                                     " is full (the command is not reading)");
  }
  stdin_pending_.insert(stdin_pending_.end(), data.begin(), data.end());
  if (watchdog_ && !kill_reason_) watchdog_->OnInput(Watchdog::Clock::now());
  FlushStdin();
  return std::monostate{};
}

Answer<std::monostate> Session::CloseStdin() {
  if (auto refused = NotRunning()) return *refused;
  if (child_->pty_master) {
    // A terminal has no separate stdin to close: send EOF (^D) as a terminal would.
    stdin_pending_.push_back(0x04);
  } else {
    stdin_close_pending_ = true;
  }
  FlushStdin();
  return std::monostate{};
}

Answer<std::monostate> Session::Resize(wire::PtySize size) {
  if (auto refused = NotRunning()) return *refused;
  if (!child_->pty_master) {
    return MakeError(wire::ErrorCode::kWrongState, "session " + info_.id + " has no terminal",
                     "/session");
  }
  struct winsize ws {};
  ws.ws_row = static_cast<unsigned short>(size.rows);
  ws.ws_col = static_cast<unsigned short>(size.cols);
  // The kernel sends SIGWINCH to the terminal's foreground process group.
  if (::ioctl(child_->pty_master.get(), TIOCSWINSZ, &ws) != 0) {
    return MakeError(wire::ErrorCode::kInternal, ErrnoError("ioctl(TIOCSWINSZ)").ToString());
  }
  info_.pty = size;
  return std::monostate{};
}

void Session::FlushStdin() {
  if (!child_) return;
  const int fd = child_->pty_master ? child_->pty_master.get() : child_->stdin_write.get();
  if (fd < 0) return;
  while (!stdin_pending_.empty()) {
    const ssize_t n = ::write(fd, stdin_pending_.data(), stdin_pending_.size());
    if (n > 0) {
      stdin_pending_.erase(stdin_pending_.begin(), stdin_pending_.begin() + n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    stdin_pending_.clear();  // EPIPE: the reader is gone
    break;
  }
  const bool waiting = !stdin_pending_.empty();
  const bool watched = std::find(watched_.begin(), watched_.end(), fd) != watched_.end();
  if (child_->pty_master) {
    UpdateOutputWatch(fd);  // EPOLLOUT while input waits, EPOLLIN unless output is paused
  } else if (waiting) {
    if (!watched) Watch(fd, EPOLLOUT, [this](uint32_t) { FlushStdin(); });
  } else if (watched) {
    Unwatch(fd);
  }
  if (!waiting && stdin_close_pending_ && !child_->pty_master) {
    child_->stdin_write.Reset();
    stdin_close_pending_ = false;
    // The store's copy of the write end would keep the pipe open: no end of file for the command.
    if (shared_.fd_store != nullptr) shared_.fd_store->Remove(info_.id, sd::FdKind::kIn);
  }
}

}  // namespace mp::supervisor

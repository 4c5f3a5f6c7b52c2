// Session's re-adoption after a restart of the supervisor (session.h: Adopt, AdoptionInfo;
// adoption.h: the record and the stored fds).
#include <poll.h>
#include <sys/ioctl.h>

#include <cstdio>
#include <utility>
#include <vector>

#include "supervisor/session.h"

namespace mp::supervisor {

AdoptionRecord Session::AdoptionInfo() const {
  AdoptionRecord r;
  if (child_) {
    r.init_pid = child_->init.pid();
    r.pty = child_->pty_master.valid();
  }
  r.running_since_ms = running_since_ms_;
  if (policy_) {
    r.policy_name = policy_->policy.name;
    r.deadlines = policy_->policy.deadlines;
    r.output = policy_->policy.output;
    if (policy_->policy.network == sandbox::NetworkMode::kAllowlist) {
      r.egress_allow.emplace();
      for (const auto& rule : policy_->policy.network_allow.rules()) {
        r.egress_allow->push_back(rule.ToString());
      }
      r.egress_gateway = policy_->policy.gateway;
    }
  }
  return r;
}

void Session::Adopt(sandbox::SpawnedChild child, const AdoptionRecord& record, Callbacks callbacks,
                    std::optional<OutputStage> stage, UniqueFd pty_queue) {
  callbacks_ = std::move(callbacks);
  start_reported_ = true;  // the spawn was answered by the supervisor that started it
  child_.emplace(std::move(child));
  info_.state = wire::SessionState::kRunning;
  running_since_ms_ = record.running_since_ms;
  ++info_.supervisor_restarts;
  // The chunk the last supervisor was moving when it died goes into the transcript first:
  // the pipes continue after it.
  if (stage) {
    auto recovered = RecoverStaged(*stage, *log_);
    if (!recovered) {
      // Emptied, so that what it held never mixes with the next chunk: dropped, and said.
      const bool cleared = static_cast<bool>(stage->Clear());
      std::fprintf(stderr, "monkeyproofd: session %s: output stage: %s; %s\n", info_.id.c_str(),
                   recovered.error().ToString().c_str(),
                   cleared ? "dropped" : "left as it is, not used again");
      if (!cleared) stage.reset();
    } else if (recovered->outcome != StageRecovery::Outcome::kEmpty) {
      std::fprintf(stderr, "monkeyproofd: session %s: output stage: %s\n", info_.id.c_str(),
                   recovered->note.c_str());
      info_.output_lines += recovered->lines;
    }
    info_.output_bytes = log_->total();
  }
  // A terminal's chunk the last supervisor had moved from the master into the queue, and not
  // yet into the stage, follows it: the master's next bytes come after those.
  if (pty_queue) {
    pty_queue_ = std::move(pty_queue);
    if (stage) stage_.emplace(std::move(*stage));
    if (const uint64_t queued = DrainPtyQueue(stage_.has_value()); queued > 0) {
      std::fprintf(stderr,
                   "monkeyproofd: session %s: %llu bytes the PTY queue held went to the "
                   "transcript\n",
                   info_.id.c_str(), static_cast<unsigned long long>(queued));
    }
    if (stage_) stage.emplace(std::move(*stage_));
    stage_.reset();
    info_.output_bytes = log_->total();
  }
  const bool held_queue = pty_queue_.valid();
  if (shared_.fd_store != nullptr) {
    using K = sd::FdKind;
    std::vector<K> kinds = {K::kPidfd, K::kStatus};
    const std::pair<K, bool> stdio[] = {
        {K::kIn, child_->stdin_write.valid()},  {K::kOut, child_->stdout_read.valid()},
        {K::kErr, child_->stderr_read.valid()}, {K::kPty, child_->pty_master.valid()},
        {K::kStage, stage.has_value()},         {K::kPtyQueue, held_queue}};
    for (const auto& [kind, held] : stdio) {
      if (held) kinds.push_back(kind);
    }
    shared_.fd_store->Adopt(info_.id, kinds);
    // Staging goes on with the stored stage (and queue); a session stored without them (by a
    // supervisor that did not stage, or did not stage terminals) gets them now; with staging
    // off (a test's control) they are released.
    const bool pty = child_->pty_master.valid();
    if (shared_.stage_output && stage && (held_queue || !pty)) {
      stage_.emplace(std::move(*stage));
    } else {
      if (stage) shared_.fd_store->Remove(info_.id, K::kStage);
      if (held_queue) shared_.fd_store->Remove(info_.id, K::kPtyQueue);
      pty_queue_.Reset();
      CreateStage();
      if (stage_) {
        auto stored = shared_.fd_store->Store(
            info_.id, {{K::kStage, stage_->fd()}, {K::kPtyQueue, pty_queue_.get()}});
        if (!stored) {
          std::fprintf(stderr, "monkeyproofd: session %s: %s\n", info_.id.c_str(),
                       stored.error().ToString().c_str());
          shared_.fd_store->Remove(info_.id, K::kStage);
          shared_.fd_store->Remove(info_.id, K::kPtyQueue);
          stage_.reset();
          pty_queue_.Reset();
        }
      }
    }
  } else {
    pty_queue_.Reset();
  }
  // What waits in its pipes or terminal was written while nobody read it, at whatever pace the
  // command had: it does not count against the rate ceiling (OnOutput).
  backlog_exempt_ = 0;
  for (int fd : {child_->stdout_read.get(), child_->stderr_read.get(), child_->pty_master.get()}) {
    int queued = 0;
    if (fd >= 0 && ::ioctl(fd, FIONREAD, &queued) == 0 && queued > 0) {
      backlog_exempt_ += static_cast<uint64_t>(queued);
    }
  }
  // The deadlines keep their start: the watchdog starts as long ago as the command has run.
  const uint64_t now_ms = WallClockMs();
  const auto ran_for = std::chrono::milliseconds(
      now_ms > record.running_since_ms ? now_ms - record.running_since_ms : 0);
  const auto now = Watchdog::Clock::now();
  // Init already gone: the session ends from its report, before any deadline could claim it.
  struct pollfd exited = {child_->init.fd(), POLLIN, 0};
  const bool ended_meanwhile = ::poll(&exited, 1, 0) > 0;
  WatchRunning(now - ran_for, /*arm=*/false);
  if (ended_meanwhile) {
    std::fprintf(stderr, "monkeyproofd: session %s: re-adopted; its command ended meanwhile\n",
                 info_.id.c_str());
    OnInitExit();
    return;
  }
  // Nobody watched its output or input while the supervisor was away: not idle.
  watchdog_->OnInput(now);
  watchdog_timer_->Arm();
  if (memory_events_) OnCgroupEvent(CgroupEventSource::kMemory);
  if (pids_events_) OnCgroupEvent(CgroupEventSource::kPids);
  std::fprintf(
      stderr, "monkeyproofd: session %s: re-adopted (restart %u), output continues at %llu\n",
      info_.id.c_str(), info_.supervisor_restarts, static_cast<unsigned long long>(log_->total()));
}

}  // namespace mp::supervisor

// Session, its output side: reading the output fds into the log under the watchdog's rate
// budget, pausing and resuming those reads (output.on_flood "throttle"), and serving the
// output to subscribers and readers. The rest of the lifetime is in session.cc. Supervisor
// only; single-threaded (the loop's thread).
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "supervisor/session.h"  // the class this file implements a part of

namespace mp::supervisor {
namespace {

constexpr size_t kReadChunk = size_t{64} * 1024;
constexpr int kReadsPerWakeup = 8;  // fairness between sessions

std::string ThrottleNotice(const Policy& p, uint64_t episode) {
  const uint64_t rate = p.output.max_rate_bytes_per_second;
  const uint64_t window = std::max<uint64_t>(p.output.max_rate_window_seconds, 1);
  return "output over the ceiling of policy \"" + p.name + "\" (" + std::to_string(rate) +
         " bytes/s after a burst of " + std::to_string(rate * window) +
         "): reading it no faster than that, the command waits (output.on_flood \"throttle\"; "
         "throttle episode " +
         std::to_string(episode) + ")";
}

}  // namespace

// --- Reading the output -----------------------------------------------------------------

wire::OutputStream Session::StreamOf(int fd) const {
  return fd == child_->pty_master.get()    ? wire::OutputStream::kPty
         : fd == child_->stdout_read.get() ? wire::OutputStream::kStdout
                                           : wire::OutputStream::kStderr;
}

void Session::UpdateOutputWatch(int fd) {
  const bool watched = std::find(watched_.begin(), watched_.end(), fd) != watched_.end();
  const auto parked = std::find(parked_.begin(), parked_.end(), fd);
  if (!watched && parked == parked_.end()) return;  // at end of file
  const bool pty = fd == child_->pty_master.get();
  const uint32_t events = (output_paused_ ? 0u : uint32_t{EPOLLIN}) |
                          (pty && !stdin_pending_.empty() ? uint32_t{EPOLLOUT} : 0u);
  if (events == 0) {
    // Off the loop rather than watched for nothing: EPOLLHUP (the writer gone) is reported
    // whatever the mask, and would wake the loop again and again while reading is paused.
    if (watched) {
      Unwatch(fd);
      parked_.push_back(fd);
    }
    return;
  }
  if (watched) {
    (void)shared_.loop.Modify(fd, events);
    return;
  }
  parked_.erase(parked);
  Watch(fd, events, [this, fd](uint32_t ev) {
    if (ev & EPOLLOUT) FlushStdin();
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    if (output_paused_) {
      // Only EPOLLOUT was asked for (stdin waits for a terminal whose output is paused): a
      // hang-up means nobody reads that input any more.
      stdin_pending_.clear();
      UpdateOutputWatch(fd);
      return;
    }
    OnOutput(fd, StreamOf(fd));
  });
}

void Session::PauseOutput(Watchdog::Clock::time_point now) {
  const Watchdog::Pause pause = watchdog_->PauseOutput(now);
  if (pause.new_episode) {
    std::fprintf(stderr, "monkeyproofd: session %s: %s\n", info_.id.c_str(),
                 ThrottleNotice(policy_->policy, watchdog_->throttle_episodes()).c_str());
  }
  output_paused_ = true;
  for (int fd : {child_->pty_master.get(), child_->stdout_read.get(), child_->stderr_read.get()}) {
    if (fd >= 0) UpdateOutputWatch(fd);
  }
  resume_timer_ = shared_.loop.AddTimer(pause.resume_at, [this] {
    resume_timer_ = 0;
    ResumeOutput();
  });
}

void Session::ResumeOutput() {
  watchdog_->ResumeOutput(Watchdog::Clock::now());
  output_paused_ = false;
  for (int fd : {child_->pty_master.get(), child_->stdout_read.get(), child_->stderr_read.get()}) {
    if (fd >= 0) UpdateOutputWatch(fd);
  }
  // While paused the idle deadline was off, so the timer may be armed for the wall deadline
  // only, or not at all.
  if (!watchdog_timer_->armed()) watchdog_timer_->Arm();
}

uint64_t Session::DrainFd(int fd, wire::OutputStream stream, uint64_t limit) {
  uint64_t got = 0;
  uint8_t buf[kReadChunk];
  const bool until_eof = limit == Watchdog::kUnlimited;  // the last drain, after init exited
  for (int i = 0; got < limit && (until_eof || i < kReadsPerWakeup); ++i) {
    // Never read(fd, buf, 0): its 0 would look like end of file.
    const ssize_t n = TakeChunk(fd, stream, buf,
                                static_cast<size_t>(std::min<uint64_t>(sizeof buf, limit - got)));
    if (n > 0) {
      auto appended = log_->Append(stream, buf, static_cast<size_t>(n));
      if (!appended) {
        std::fprintf(stderr, "monkeyproofd: session %s: transcript: %s\n", info_.id.c_str(),
                     appended.error().ToString().c_str());
      }
      // The chunk is in the log (or took its offsets as a gap): the stage is empty again.
      if (stage_) {
        if (auto cleared = stage_->Clear(); !cleared) DropStage(cleared.error());
      }
      got += static_cast<uint64_t>(n);
      info_.output_lines += static_cast<uint64_t>(std::count(buf, buf + n, uint8_t{'\n'}));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    // EOF, or EIO from a PTY master whose last slave closed: this stream is done.
    Unwatch(fd);
    parked_.erase(std::remove(parked_.begin(), parked_.end(), fd), parked_.end());
    break;
  }
  return got;
}

ssize_t Session::TakeChunk(int fd, wire::OutputStream stream, uint8_t* buf, size_t max) {
  if (!stage_) return ::read(fd, buf, max);
  int source = fd;
  if (stream == wire::OutputStream::kPty) {
    // A terminal's chunk goes into its queue first (output_stage.h, FillPtyQueue).
    auto queued = FillPtyQueue(fd, pty_queue_.get(), max);
    if (!queued) {
      const int e = queued.error().errnum;
      if (e != EAGAIN && e != EIO) {
        DropStage(queued.error());
        return ::read(fd, buf, max);
      }
      errno = e;  // nothing to read, or the terminal's end
      return -1;
    }
    if (*queued == 0) return 0;
    source = pty_queue_.get();
  }
  auto taken = stage_->Take(source, stream, log_->total(), buf, max);
  if (taken) return static_cast<ssize_t>(*taken);
  if (taken.error().errnum == EAGAIN) {
    errno = EAGAIN;
    return -1;
  }
  DropStage(taken.error());
  return ::read(fd, buf, max);
}

uint64_t Session::DrainPtyQueue(bool staged) {
  uint64_t moved = 0;
  uint8_t buf[kReadChunk];
  for (;;) {
    ssize_t n = 0;
    if (staged) {
      auto taken =
          stage_->Take(pty_queue_.get(), wire::OutputStream::kPty, log_->total(), buf, sizeof buf);
      if (!taken && taken.error().errnum != EAGAIN) {
        std::fprintf(stderr, "monkeyproofd: session %s: PTY queue: %s\n", info_.id.c_str(),
                     taken.error().ToString().c_str());
        staged = false;  // read on without the stage (DropStage follows in the caller)
        continue;
      }
      n = taken ? static_cast<ssize_t>(*taken) : 0;
    } else {
      do {
        n = ::read(pty_queue_.get(), buf, sizeof buf);
      } while (n < 0 && errno == EINTR);
    }
    if (n <= 0) return moved;
    if (auto appended = log_->Append(wire::OutputStream::kPty, buf, static_cast<size_t>(n));
        !appended) {
      std::fprintf(stderr, "monkeyproofd: session %s: transcript: %s\n", info_.id.c_str(),
                   appended.error().ToString().c_str());
    }
    if (staged) {
      if (auto cleared = stage_->Clear(); !cleared) staged = false;
    }
    moved += static_cast<uint64_t>(n);
    info_.output_lines += static_cast<uint64_t>(std::count(buf, buf + n, uint8_t{'\n'}));
  }
}

void Session::CreateStage() {
  if (shared_.fd_store == nullptr || !shared_.stage_output) return;
  auto stage = OutputStage::Create(info_.id);
  Result<UniqueFd> queue = UniqueFd();
  if (stage && child_->pty_master.valid()) queue = CreatePtyQueue();
  if (!stage || !queue) {
    std::fprintf(stderr,
                 "monkeyproofd: session %s: no output staging (%s): a kill -9 of the supervisor "
                 "may lose up to 64 KiB of its output per stream\n",
                 info_.id.c_str(), (stage ? queue.error() : stage.error()).ToString().c_str());
    return;
  }
  stage_.emplace(std::move(*stage));
  pty_queue_ = std::move(*queue);
}

void Session::DropStage(const Error& why) {
  std::fprintf(stderr,
               "monkeyproofd: session %s: output staging stopped (%s): a kill -9 of the "
               "supervisor may lose up to 64 KiB of its output per stream\n",
               info_.id.c_str(), why.ToString().c_str());
  // A chunk staged but not appended goes to the log now (RecoverStaged tells which), then what
  // a terminal's queue holds.
  auto recovered = RecoverStaged(*stage_, *log_);
  if (!recovered || recovered->outcome != StageRecovery::Outcome::kEmpty) {
    std::fprintf(stderr, "monkeyproofd: session %s: output stage: %s\n", info_.id.c_str(),
                 recovered ? recovered->note.c_str() : recovered.error().ToString().c_str());
  }
  if (pty_queue_) DrainPtyQueue(/*staged=*/false);
  stage_.reset();
  pty_queue_.Reset();
  if (shared_.fd_store != nullptr) {
    shared_.fd_store->Remove(info_.id, sd::FdKind::kStage);
    shared_.fd_store->Remove(info_.id, sd::FdKind::kPtyQueue);
  }
}

void Session::OnOutput(int fd, wire::OutputStream stream) {
  const auto now = Watchdog::Clock::now();
  // Under the throttle, at most what the rate allows now (kUnlimited means no throttle, but
  // a wakeup still reads at most kReadsPerWakeup chunks).
  const uint64_t budget = watchdog_->ReadBudget(now);
  const uint64_t got = DrainFd(fd, stream, std::min(budget, kReadChunk * kReadsPerWakeup));
  if (got > 0) {
    info_.output_bytes = log_->total();
    // The backlog a re-adopted session wrote while no supervisor ran is not held against it.
    const uint64_t exempt = std::min(backlog_exempt_, got);
    backlog_exempt_ -= exempt;
    if (got > exempt) {
      if (auto verdict = watchdog_->OnOutput(got - exempt, now)) OnVerdict(*verdict);
    }
    PumpAll();
  }
  // The budget is spent: stop reading; the pipe (or the terminal) fills and the writer waits.
  if (got >= budget && !init_exited_ && !output_paused_) PauseOutput(now);
}

// --- Output to subscribers --------------------------------------------------------------

Answer<std::monostate> Session::CheckSubscribe(std::optional<uint64_t> since) const {
  const uint64_t total = log_ ? log_->total() : 0;
  if (since && *since > total) {
    return MakeError(wire::ErrorCode::kBadRequest,
                     "since " + std::to_string(*since) + " is past the end of the output (" +
                         std::to_string(total) + " bytes)",
                     "/since");
  }
  return std::monostate{};
}

void Session::Subscribe(uint64_t connection, std::optional<uint64_t> since) {
  Subscription& sub = subs_[connection];
  sub.next = since.value_or(log_ ? log_->total() : 0);
  sub.exit_sent = false;
  Pump(connection, sub);
}

void Session::OnDrained(uint64_t connection) {
  auto it = subs_.find(connection);
  if (it != subs_.end()) Pump(connection, it->second);
}

void Session::PumpAll() {
  for (auto& [conn, sub] : subs_) Pump(conn, sub);
}

void Session::Pump(uint64_t connection, Subscription& sub) {
  if (!log_) return;
  EventSink& sink = shared_.sink;
  while (sub.next < log_->total() && sink.CanSend(connection)) {
    if (sub.next < log_->first_held()) {
      sink.Send(connection, wire::GapEvent{info_.id, {sub.next, log_->first_held()}});
      sub.next = log_->first_held();
      continue;
    }
    auto read = log_->Read(sub.next, wire::kMaxChunkBytes);
    if (!read || read->next <= sub.next) break;
    for (const auto& gap : read->gaps) sink.Send(connection, wire::GapEvent{info_.id, gap});
    size_t pos = 0;
    for (const auto& chunk : read->chunks) {
      wire::OutputEvent ev;
      ev.session = info_.id;
      ev.stream = chunk.stream;
      ev.offset = chunk.offset;
      if (read->chunks.size() == 1) {
        ev.data = std::move(read->data);  // the usual case: one chunk, no copy
      } else {
        ev.data.assign(read->data.begin() + static_cast<ptrdiff_t>(pos),
                       read->data.begin() + static_cast<ptrdiff_t>(pos + chunk.length));
      }
      pos += chunk.length;
      sink.Send(connection, ev);
    }
    sub.next = read->next;
  }
  if (ended_ && !sub.exit_sent && sub.next >= log_->total() && sink.CanSend(connection)) {
    sink.Send(connection, wire::ExitEvent{info_.id, *info_.end});
    sub.exit_sent = true;
  }
}

Answer<wire::OutputRead> Session::ReadOutput(uint64_t since, uint32_t limit) const {
  if (!log_) {
    return MakeError(wire::ErrorCode::kNotFound, "session " + info_.id + " has no output record");
  }
  if (since > log_->total()) {
    return MakeError(wire::ErrorCode::kBadRequest,
                     "since " + std::to_string(since) + " is past the end of the output (" +
                         std::to_string(log_->total()) + " bytes)",
                     "/since");
  }
  auto r = log_->Read(since, limit);
  if (!r) return MakeError(wire::ErrorCode::kInternal, r.error().ToString());
  r->ended = ended_;
  return std::move(*r);
}

}  // namespace mp::supervisor

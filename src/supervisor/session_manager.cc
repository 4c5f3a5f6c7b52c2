#include "supervisor/session_manager.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "sandbox/spawn.h"

namespace mp::supervisor {
namespace {

using wire::EndReason;
using wire::SessionState;

constexpr size_t kReadChunk = size_t{64} * 1024;
constexpr int kReadsPerWakeup = 8;  // fairness between sessions

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::string NewSessionId() {
  static const char kAlphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  unsigned char bytes[20];
  size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  std::string id = "s-";
  for (unsigned char b : bytes) id += kAlphabet[b % 62];  // slight bias is harmless for ids
  return id;
}

wire::SessionType ToWire(SessionType t) {
  switch (t) {
    case SessionType::kExec:
      return wire::SessionType::kExec;
    case SessionType::kPrint:
      return wire::SessionType::kPrint;
    case SessionType::kInteractive:
      return wire::SessionType::kInteractive;
  }
  return wire::SessionType::kExec;
}

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

std::string DisplayCommand(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    out += a;
    if (out.size() > wire::kMaxCommandBytes) break;
  }
  if (out.size() > wire::kMaxCommandBytes) out.resize(wire::kMaxCommandBytes);
  return out;
}

std::string Preview(const std::string& task) {
  if (task.size() <= 500) return task;
  // Cut at a UTF-8 boundary.
  size_t n = 500;
  while (n > 0 && (static_cast<unsigned char>(task[n]) & 0xC0) == 0x80) --n;
  return task.substr(0, n);
}

// The command's host pid: init's only child.
std::optional<uint32_t> CommandPid(pid_t init) {
  std::ifstream f("/proc/" + std::to_string(init) + "/task/" + std::to_string(init) + "/children");
  uint32_t pid = 0;
  if (f >> pid) return pid;
  return std::nullopt;
}

Result<void> WriteFileAtomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return ErrnoError("open(\"" + tmp + "\")");
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return ErrnoError("write(\"" + tmp + "\")");
  }
  if (::fdatasync(fd.get()) != 0) return ErrnoError("fdatasync(\"" + tmp + "\")");
  MP_RETURN_IF_ERROR(fd.Close());
  if (::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("rename(\"" + path + "\")");
  return Ok();
}

bool ValidLeafName(const std::string& name) { return wire::IsValidSessionId(name); }

}  // namespace

wire::ErrorBody MakeError(wire::ErrorCode code, std::string message, std::string field) {
  wire::ErrorBody e;
  e.code = code;
  e.message = std::move(message);
  e.field = std::move(field);
  return e;
}

struct SessionManager::Session {
  wire::SessionInfo info;
  std::optional<EffectivePolicy> policy;
  std::optional<sandbox::SpawnedChild> child;
  std::unique_ptr<OutputLog> log;
  std::map<uint64_t, Subscription> subs;
  EventLoop::TimerId wall_timer = 0, idle_timer = 0, grace_timer = 0, expiry_timer = 0;
  std::optional<EndReason> kill_reason;
  bool ended = false;
  // Output-rate window.
  uint64_t window_start_ms = 0;
  uint64_t window_bytes = 0;
  // Stdin.
  std::vector<uint8_t> stdin_pending;
  bool stdin_close_pending = false;
  UniqueFd memory_events, pids_events;
  std::vector<int> watched;  // fds registered with the loop
};

SessionManager::SessionManager(EventLoop& loop, sandbox::CgroupRoot cgroup_root, PolicySet policies,
                               ManagerOptions options, EventSink& sink, AuditLog& audit)
    : loop_(loop),
      cgroup_root_(std::move(cgroup_root)),
      policies_(std::move(policies)),
      options_(std::move(options)),
      sink_(sink),
      audit_(audit) {}

SessionManager::~SessionManager() {
  for (auto& [id, s] : sessions_) {
    for (int fd : s->watched) loop_.Remove(fd);
  }
}

std::string SessionManager::SessionDir(const std::string& id) const {
  return options_.state_dir + "/sessions/" + id;
}

SessionManager::Session* SessionManager::Find(const std::string& id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

void SessionManager::Audit(std::string_view action, const std::string& session,
                           const PeerInfo& peer, std::string_view outcome,
                           std::string_view detail) {
  audit_.Write({action, session, peer.pid, peer.uid, peer.client, outcome, detail});
}

void SessionManager::WriteRecord(const Session& s) {
  auto r = WriteFileAtomic(SessionDir(s.info.id) + "/record.json", wire::SessionInfoToJson(s.info));
  if (!r)
    std::fprintf(stderr, "monkeyproofd: session %s: record: %s\n", s.info.id.c_str(),
                 r.error().ToString().c_str());
}

Result<void> SessionManager::Recover() {
  const std::string sessions_dir = options_.state_dir + "/sessions";
  if (::mkdir(sessions_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError("mkdir(\"" + sessions_dir + "\")");
  }
  std::vector<std::unique_ptr<Session>> loaded;
  if (DIR* d = ::opendir(sessions_dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string id = e->d_name;
      if (!wire::IsValidSessionId(id)) continue;
      std::ifstream f(SessionDir(id) + "/record.json");
      std::stringstream text;
      text << f.rdbuf();
      auto info = wire::SessionInfoFromJson(text.str());
      if (!info || info->id != id) {
        std::fprintf(stderr, "monkeyproofd: session %s: unreadable record, left on disk\n",
                     id.c_str());
        continue;
      }
      auto s = std::make_unique<Session>();
      s->info = std::move(*info);
      s->ended = true;
      if (!s->info.end) {
        wire::EndRecord end;
        end.reason = EndReason::kSupervisorRestart;
        end.ended_at_ms = NowMs();
        end.detail = "the supervisor restarted while the session ran";
        s->info.end = end;
        s->info.state = SessionState::kKilled;
        s->info.pid.reset();
      }
      auto log = OutputLog::Open(SessionDir(id) + "/output", {});
      if (log) s->log = std::move(*log);
      if (s->log) s->info.output_bytes = std::max(s->info.output_bytes, s->log->total());
      loaded.push_back(std::move(s));
    }
    ::closedir(d);
  }
  std::sort(loaded.begin(), loaded.end(), [](const auto& a, const auto& b) {
    return a->info.created_at_ms < b->info.created_at_ms;
  });
  for (auto& s : loaded) {
    WriteRecord(*s);
    const std::string id = s->info.id;
    order_.push_back(id);
    Session& ref = *s;
    sessions_.emplace(id, std::move(s));
    ScheduleExpiry(ref);
  }
  // Leaves of an earlier run: kill every process in them, then remove them.
  if (DIR* d = ::opendir(cgroup_root_.path().c_str())) {
    std::vector<std::string> leaves;
    while (const dirent* e = ::readdir(d)) {
      if (e->d_type == DT_DIR && ValidLeafName(e->d_name)) leaves.emplace_back(e->d_name);
    }
    ::closedir(d);
    for (const auto& name : leaves) {
      auto leaf = sandbox::CgroupLeaf::OpenExisting(cgroup_root_, name);
      if (!leaf) continue;
      auto done = sandbox::FinishLeaf(*leaf, std::chrono::seconds(5));
      std::fprintf(stderr, "monkeyproofd: recovered leaf %s: %s\n", name.c_str(),
                   done ? "killed and removed" : done.error().ToString().c_str());
    }
  }
  EnforceRetention();
  return Ok();
}

Answer<wire::SessionInfo> SessionManager::Spawn(const wire::SpawnRequest& req,
                                                const PeerInfo& peer) {
  auto fail = [&](wire::ErrorBody e) -> Answer<wire::SessionInfo> {
    Audit("spawn", "", peer, wire::ToString(e.code), e.message);
    return e;
  };
  if (active_ >= options_.max_sessions) {
    return fail(MakeError(wire::ErrorCode::kCapacity,
                          "at capacity: " + std::to_string(active_) + " of " +
                              std::to_string(options_.max_sessions) + " sessions are running"));
  }
  // Which policy: the preset, or "exec" for exec sessions without one.
  std::string preset_name;
  if (req.preset) {
    preset_name = *req.preset;
  } else if (req.type == wire::SessionType::kExec) {
    preset_name = "exec";
  } else {
    return fail(MakeError(wire::ErrorCode::kBadRequest,
                          std::string(wire::ToString(req.type)) + " sessions need a preset",
                          "/preset"));
  }
  auto policy = policies_.Find(preset_name);
  if (!policy) {
    return fail(
        MakeError(wire::ErrorCode::kNotFound, "unknown preset \"" + preset_name + "\"", "/preset"));
  }
  if (ToWire(policy->type) != req.type) {
    return fail(MakeError(wire::ErrorCode::kBadRequest,
                          "preset \"" + preset_name + "\" is for " +
                              std::string(ToString(policy->type)) + " sessions, not " +
                              std::string(wire::ToString(req.type)),
                          "/session_type"));
  }
  RequestedLimits requested;
  if (req.limits) {
    requested.memory_max_bytes = req.limits->memory_max_bytes;
    requested.memory_swap_max_bytes = req.limits->memory_swap_max_bytes;
    requested.pids_max = req.limits->pids_max;
    requested.cpu_max_percent = req.limits->cpu_max_percent;
    requested.wall_seconds = req.limits->wall_seconds;
    requested.idle_seconds = req.limits->idle_seconds;
  }
  auto effective = Tighten(*policy, requested);
  if (!effective) {
    const auto code = supervisor::ErrorCode(effective.error()) == kPolicyViolation
                          ? wire::ErrorCode::kPolicyViolation
                          : wire::ErrorCode::kBadRequest;
    return fail(MakeError(code, effective.error().ToString(), "/limits"));
  }
  SessionLaunch launch;
  launch.task = req.task;
  launch.cwd = req.cwd.value_or("");
  if (req.command) {
    std::vector<std::string> cmd{*req.command};
    cmd.insert(cmd.end(), req.args.begin(), req.args.end());
    launch.command = cmd;
  }
  for (const auto& [k, v] : req.env) launch.env[k] = v;
  auto spawn_req = BuildSpawnRequest(*effective, launch, options_.host);
  if (!spawn_req) {
    const auto code = supervisor::ErrorCode(spawn_req.error()) == kPolicyViolation
                          ? wire::ErrorCode::kPolicyViolation
                          : wire::ErrorCode::kBadRequest;
    return fail(MakeError(code, spawn_req.error().ToString()));
  }
  if (req.max_turns && !spawn_req->argv.empty()) {
    // The original's contract: Claude Code presets take --max-turns N before the task.
    const std::string& prog = spawn_req->argv[0];
    if (prog == "claude" || prog.ends_with("/claude")) {
      spawn_req->argv.insert(spawn_req->argv.end() - 1,
                             {"--max-turns", std::to_string(*req.max_turns)});
    }
  }
  if (req.pty) {
    spawn_req->pty_rows = static_cast<unsigned short>(req.pty->rows);
    spawn_req->pty_cols = static_cast<unsigned short>(req.pty->cols);
  }

  auto s = std::make_unique<Session>();
  s->info.id = NewSessionId();
  s->info.state = SessionState::kStarting;
  s->info.type = req.type;
  if (req.preset) s->info.preset = req.preset;
  s->info.task_preview = Preview(req.task);
  s->info.cwd = spawn_req->workspace;
  s->info.command = DisplayCommand(spawn_req->argv);
  s->info.created_at_ms = NowMs();
  s->info.owner = req.owner;
  s->info.labels = req.labels;
  if (spawn_req->stdio == sandbox::StdioMode::kPty) {
    s->info.pty = wire::PtySize{spawn_req->pty_rows, spawn_req->pty_cols};
  }
  const std::string dir = SessionDir(s->info.id);
  if (::mkdir(dir.c_str(), 0700) != 0) {
    return fail(
        MakeError(wire::ErrorCode::kInternal, ErrnoError("mkdir(\"" + dir + "\")").ToString()));
  }
  OutputLogOptions log_options;
  log_options.ring_bytes = effective->policy.output.ring_bytes;
  log_options.transcript_max_bytes = effective->policy.output.transcript_max_bytes;
  auto log = OutputLog::Create(dir + "/output", log_options);
  if (!log) {
    return fail(MakeError(wire::ErrorCode::kInternal, log.error().ToString()));
  }
  s->log = std::move(*log);
  s->policy = std::move(*effective);

  auto child = sandbox::Spawn(cgroup_root_, s->info.id, *spawn_req);
  Session& ref = *s;
  const std::string id = s->info.id;
  order_.push_back(id);
  sessions_.emplace(id, std::move(s));
  if (!child) {
    // The record stays, inspectable, with the step that failed.
    ref.ended = true;
    ref.info.state = SessionState::kFailed;
    wire::EndRecord end;
    end.reason = EndReason::kSpawnError;
    end.ended_at_ms = NowMs();
    end.detail = child.error().ToString();
    ref.info.end = end;
    WriteRecord(ref);
    ScheduleExpiry(ref);
    Audit("spawn", id, peer, "spawn_error", end.detail);
    EnforceRetention();
    return ref.info;
  }
  ref.child.emplace(std::move(*child));
  ref.info.state = SessionState::kRunning;
  ref.info.pid = CommandPid(ref.child->init.pid());
  ++active_;
  Register(ref);
  WriteRecord(ref);
  Audit("spawn", id, peer, "ok",
        "preset=" + preset_name + " cwd=" + ref.info.cwd + " command=" + ref.info.command);
  EnforceRetention();
  return ref.info;
}

void SessionManager::Register(Session& session) {
  Session& s = session;
  auto& c = *s.child;
  const std::string id = s.info.id;
  auto watch = [&](int fd, uint32_t events, EventLoop::FdCallback cb) {
    if (fd < 0) return;
    SetNonBlocking(fd);
    auto r = loop_.Add(fd, events, std::move(cb));
    if (r)
      s.watched.push_back(fd);
    else
      std::fprintf(stderr, "monkeyproofd: session %s: epoll: %s\n", id.c_str(),
                   r.error().ToString().c_str());
  };
  // Every callback looks the session up by id: it may have been forgotten.
  auto with = [this, id](auto fn) {
    return [this, id, fn](uint32_t events) {
      if (Session* found = Find(id)) fn(*found, events);
    };
  };
  if (c.pty_master) {
    watch(c.pty_master.get(), EPOLLIN, with([this](Session& x, uint32_t ev) {
            if (ev & EPOLLOUT) FlushStdin(x);
            if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
              OnOutput(x, x.child->pty_master.get(), wire::OutputStream::kPty);
            }
          }));
  } else {
    watch(c.stdout_read.get(), EPOLLIN, with([this](Session& x, uint32_t) {
            OnOutput(x, x.child->stdout_read.get(), wire::OutputStream::kStdout);
          }));
    watch(c.stderr_read.get(), EPOLLIN, with([this](Session& x, uint32_t) {
            OnOutput(x, x.child->stderr_read.get(), wire::OutputStream::kStderr);
          }));
    if (c.stdin_write) SetNonBlocking(c.stdin_write.get());
  }
  watch(c.init.fd(), EPOLLIN, with([this](Session& x, uint32_t) { OnInitExit(x); }));
  // memory.events and pids.events raise EPOLLPRI when they change, and keep raising it until
  // the file is read again through the watched descriptor: each callback reads it first, or
  // the (level-triggered) loop would spin.
  if (auto fd = c.leaf.OpenEventFile("memory.events")) {
    s.memory_events = std::move(*fd);
    AcknowledgeEventFile(s.memory_events.get());
    watch(s.memory_events.get(), EPOLLPRI, with([this](Session& x, uint32_t) {
            AcknowledgeEventFile(x.memory_events.get());
            OnCgroupEvent(x, true);
          }));
  }
  if (auto fd = c.leaf.OpenEventFile("pids.events")) {
    s.pids_events = std::move(*fd);
    AcknowledgeEventFile(s.pids_events.get());
    watch(s.pids_events.get(), EPOLLPRI, with([this](Session& x, uint32_t) {
            AcknowledgeEventFile(x.pids_events.get());
            OnCgroupEvent(x, false);
          }));
  }
  // An OOM kill or a refused fork between the spawn and the acknowledgements above raised no
  // event we will see: look once now.
  if (s.memory_events) OnCgroupEvent(s, true);
  if (s.pids_events) OnCgroupEvent(s, false);
  const auto& d = s.policy->policy.deadlines;
  if (d.wall_seconds > 0) {
    s.wall_timer = loop_.AddTimer(std::chrono::seconds(d.wall_seconds), [this, id] {
      if (Session* found = Find(id)) {
        found->wall_timer = 0;
        BeginKill(*found, EndReason::kTimeoutWall, false);
      }
    });
  }
  s.window_start_ms = NowMs();
  ResetIdleTimer(s);
}

void SessionManager::ResetIdleTimer(Session& s) {
  if (s.ended || s.kill_reason) return;
  const uint64_t idle = s.policy->policy.deadlines.idle_seconds;
  if (idle == 0) return;
  if (s.idle_timer != 0) loop_.CancelTimer(s.idle_timer);
  const std::string id = s.info.id;
  s.idle_timer = loop_.AddTimer(std::chrono::seconds(idle), [this, id] {
    if (Session* found = Find(id)) {
      found->idle_timer = 0;
      BeginKill(*found, EndReason::kTimeoutIdle, false);
    }
  });
}

uint64_t SessionManager::DrainFd(Session& s, int fd, wire::OutputStream stream, bool until_eof) {
  uint64_t got = 0;
  uint8_t buf[kReadChunk];
  for (int i = 0; until_eof || i < kReadsPerWakeup; ++i) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      auto appended = s.log->Append(stream, buf, static_cast<size_t>(n));
      if (!appended) {
        std::fprintf(stderr, "monkeyproofd: session %s: transcript: %s\n", s.info.id.c_str(),
                     appended.error().ToString().c_str());
      }
      got += static_cast<uint64_t>(n);
      s.info.output_lines += static_cast<uint64_t>(std::count(buf, buf + n, uint8_t{'\n'}));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    // EOF, or EIO from a PTY master whose last slave closed: this stream is done.
    loop_.Remove(fd);
    s.watched.erase(std::remove(s.watched.begin(), s.watched.end(), fd), s.watched.end());
    break;
  }
  return got;
}

void SessionManager::OnOutput(Session& s, int fd, wire::OutputStream stream) {
  const uint64_t got = DrainFd(s, fd, stream, false);
  if (got == 0) return;
  s.info.output_bytes = s.log->total();
  ResetIdleTimer(s);
  // Output-rate ceiling over a sliding-by-window count.
  const auto& out = s.policy->policy.output;
  if (out.max_rate_bytes_per_second > 0) {
    const uint64_t now = NowMs();
    const uint64_t window_ms = std::max<uint64_t>(1, out.max_rate_window_seconds) * 1000;
    if (now - s.window_start_ms >= window_ms) {
      s.window_start_ms = now;
      s.window_bytes = 0;
    }
    s.window_bytes += got;
    if (s.window_bytes > out.max_rate_bytes_per_second * (window_ms / 1000)) {
      BeginKill(s, EndReason::kOutputFlood, true);
    }
  }
  PumpAll(s);
}

void SessionManager::OnCgroupEvent(Session& s, bool memory) {
  if (s.ended || !s.child) return;
  auto stats = s.child->leaf.Stats();
  if (!stats) return;
  if (memory && stats->oom_kill_events > 0) {
    // memory.oom.group=1: the kernel is killing the whole leaf already.
    if (!s.kill_reason) s.kill_reason = EndReason::kOom;
    BeginKill(s, EndReason::kOom, true);
  } else if (!memory && stats->pids_max_events > 0) {
    BeginKill(s, EndReason::kPidsLimit, true);
  }
}

void SessionManager::BeginKill(Session& s, EndReason reason, bool immediate) {
  if (s.ended || !s.child) return;
  if (!s.kill_reason) s.kill_reason = reason;
  if (immediate) {
    (void)s.child->leaf.Kill();
    return;
  }
  if (s.grace_timer != 0) return;  // already terminating
  // SIGTERM to init, which passes it to every process of the namespace.
  (void)s.child->init.SendSignal(SIGTERM);
  const std::string id = s.info.id;
  s.grace_timer = loop_.AddTimer(options_.kill_grace, [this, id] {
    if (Session* found = Find(id)) {
      found->grace_timer = 0;
      if (!found->ended && found->child) (void)found->child->leaf.Kill();
    }
  });
}

void SessionManager::OnInitExit(Session& s) {
  if (s.ended) return;
  Finish(s);
}

void SessionManager::Finish(Session& s) {
  auto& c = *s.child;
  // Init is gone, so the kernel has killed the rest of the namespace: the
  // pipes hold their last bytes and then EOF.
  for (int fd : {c.stdout_read.get(), c.stderr_read.get(), c.pty_master.get()}) {
    if (fd < 0) continue;
    const auto stream = fd == c.pty_master.get()    ? wire::OutputStream::kPty
                        : fd == c.stdout_read.get() ? wire::OutputStream::kStdout
                                                    : wire::OutputStream::kStderr;
    if (std::find(s.watched.begin(), s.watched.end(), fd) != s.watched.end()) {
      DrainFd(s, fd, stream, true);
    }
  }
  auto report = sandbox::ReadExitReport(c);
  auto init_status = c.init.Wait();
  auto stats = sandbox::FinishLeaf(c.leaf, std::chrono::seconds(5));
  for (int fd : s.watched) loop_.Remove(fd);
  s.watched.clear();
  for (auto* t : {&s.wall_timer, &s.idle_timer, &s.grace_timer}) {
    if (*t != 0) loop_.CancelTimer(*t);
    *t = 0;
  }

  wire::EndRecord end;
  end.ended_at_ms = NowMs();
  sandbox::WaitStatus status;
  if (report && report->has_value()) {
    status = **report;
  } else if (init_status && init_status->has_value()) {
    status = **init_status;
  }
  if (status.exited)
    end.exit_code = status.code;
  else if (status.signal != 0)
    end.signal = status.signal;
  if (stats) {
    end.memory_peak_bytes = stats->memory_peak_bytes;
    end.cpu_usage_usec = stats->cpu_usage_usec;
    end.pids_peak = stats->pids_peak;
    if (!s.kill_reason && stats->oom_kill_events > 0) s.kill_reason = EndReason::kOom;
  } else {
    end.detail = "cgroup cleanup: " + stats.error().ToString();
  }
  end.reason = s.kill_reason.value_or(EndReason::kExit);
  s.info.end = end;
  s.info.state = end.reason == EndReason::kExit ? SessionState::kExited : SessionState::kKilled;
  s.info.output_bytes = s.log->total();
  s.ended = true;
  // An ended record keeps its transcript on disk, not its in-memory tail (up to ring_bytes
  // each, for every record kept): readers of an ended session read the disk.
  if (s.log->Sync()) (void)s.log->ReleaseRing();
  s.child.reset();
  s.memory_events.Reset();
  s.pids_events.Reset();
  --active_;
  WriteRecord(s);
  PumpAll(s);  // sends the exit event to subscribers that are caught up
  ScheduleExpiry(s);
  EnforceRetention();
}

void SessionManager::ScheduleExpiry(Session& s) {
  const auto ttl = s.info.type == wire::SessionType::kInteractive ? options_.interactive_ended_ttl
                                                                  : options_.ended_ttl;
  const std::string id = s.info.id;
  const uint64_t ended = s.info.end ? s.info.end->ended_at_ms : NowMs();
  const uint64_t now = NowMs();
  const uint64_t ttl_ms = static_cast<uint64_t>(ttl.count());
  const uint64_t left = ended + ttl_ms > now ? ended + ttl_ms - now : 0;
  s.expiry_timer = loop_.AddTimer(std::chrono::milliseconds(left), [this, id] { Forget(id); });
}

void SessionManager::Forget(const std::string& id) {
  Session* s = Find(id);
  if (s == nullptr || !s->ended) return;
  if (s->expiry_timer != 0) loop_.CancelTimer(s->expiry_timer);
  if (s->log) (void)s->log->RemoveFiles();
  const std::string dir = SessionDir(id);
  ::unlink((dir + "/record.json").c_str());
  ::rmdir(dir.c_str());
  sessions_.erase(id);
  order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
}

void SessionManager::EnforceRetention() {
  size_t ended = 0;
  uint64_t bytes = 0;
  for (const auto& id : order_) {
    const Session* s = Find(id);
    if (s != nullptr && s->ended) {
      ++ended;
      if (s->log)
        bytes += std::min<uint64_t>(s->log->total(), s->log->total() - s->log->first_held());
    }
  }
  // Oldest ended sessions go first.
  std::vector<std::string> victims;
  for (const auto& id : order_) {
    if (ended <= options_.max_ended_records && bytes <= options_.max_ended_output_bytes) break;
    const Session* s = Find(id);
    if (s == nullptr || !s->ended) continue;
    victims.push_back(id);
    --ended;
    if (s->log) bytes -= std::min<uint64_t>(bytes, s->log->total() - s->log->first_held());
  }
  for (const auto& id : victims) Forget(id);
}

void SessionManager::FlushStdin(Session& s) {
  if (!s.child) return;
  const int fd = s.child->pty_master ? s.child->pty_master.get() : s.child->stdin_write.get();
  if (fd < 0) return;
  while (!s.stdin_pending.empty()) {
    const ssize_t n = ::write(fd, s.stdin_pending.data(), s.stdin_pending.size());
    if (n > 0) {
      s.stdin_pending.erase(s.stdin_pending.begin(), s.stdin_pending.begin() + n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    s.stdin_pending.clear();  // EPIPE: the reader is gone
    break;
  }
  const bool waiting = !s.stdin_pending.empty();
  if (s.child->pty_master) {
    (void)loop_.Modify(fd, EPOLLIN | (waiting ? uint32_t{EPOLLOUT} : 0u));
  } else if (waiting) {
    if (std::find(s.watched.begin(), s.watched.end(), fd) == s.watched.end()) {
      const std::string id = s.info.id;
      if (loop_.Add(fd, EPOLLOUT, [this, id](uint32_t) {
            if (Session* x = Find(id)) FlushStdin(*x);
          })) {
        s.watched.push_back(fd);
      }
    }
  } else if (std::find(s.watched.begin(), s.watched.end(), fd) != s.watched.end()) {
    loop_.Remove(fd);
    s.watched.erase(std::remove(s.watched.begin(), s.watched.end(), fd), s.watched.end());
  }
  if (!waiting && s.stdin_close_pending && !s.child->pty_master) {
    s.child->stdin_write.Reset();
    s.stdin_close_pending = false;
  }
}

wire::SessionList SessionManager::List(const wire::ListRequest& req) const {
  wire::SessionList out;
  bool started = !req.after.has_value();
  const size_t limit = req.limit.value_or(wire::kMaxListLimit);
  for (const auto& id : order_) {
    if (!started) {
      started = id == *req.after;
      continue;
    }
    const Session* s = Find(id);
    if (s == nullptr) continue;
    if (req.owner && s->info.owner != *req.owner) continue;
    if (req.state && s->info.state != *req.state) continue;
    if (req.label && std::find(s->info.labels.begin(), s->info.labels.end(), *req.label) ==
                         s->info.labels.end()) {
      continue;
    }
    if (out.sessions.size() == limit) {
      out.more = true;
      break;
    }
    out.sessions.push_back(s->info);
  }
  return out;
}

Answer<wire::SessionInfo> SessionManager::Get(const std::string& id) const {
  const Session* s = Find(id);
  if (s == nullptr) return MakeError(wire::ErrorCode::kNotFound, "no session " + id, "/session");
  return s->info;
}

Answer<wire::SessionInfo> SessionManager::Kill(const std::string& id, const PeerInfo& peer) {
  Session* s = Find(id);
  if (s == nullptr) return MakeError(wire::ErrorCode::kNotFound, "no session " + id, "/session");
  Audit("kill", id, peer, "ok", s->ended ? "already ended" : "");
  BeginKill(*s, EndReason::kKilledByRequest, false);
  return s->info;
}

Answer<std::monostate> SessionManager::Signal(const std::string& id, int signo,
                                              const PeerInfo& peer) {
  Session* s = Find(id);
  if (s == nullptr) return MakeError(wire::ErrorCode::kNotFound, "no session " + id, "/session");
  if (s->ended || !s->child) {
    return MakeError(wire::ErrorCode::kWrongState, "session " + id + " has ended", "/session");
  }
  auto r = s->child->init.SendSignal(signo);
  Audit("signal", id, peer, r ? "ok" : "internal", std::to_string(signo));
  if (!r) return MakeError(wire::ErrorCode::kInternal, r.error().ToString());
  return std::monostate{};
}

Answer<std::monostate> SessionManager::Stdin(const std::string& id,
                                             const std::vector<uint8_t>& data,
                                             const PeerInfo& peer) {
  Session* s = Find(id);
  if (s == nullptr) return MakeError(wire::ErrorCode::kNotFound, "no session " + id, "/session");
  if (s->ended || !s->child) {
    return MakeError(wire::ErrorCode::kWrongState, "session " + id + " has ended", "/session");
  }
  if (!s->child->pty_master && (!s->child->stdin_write || s->stdin_close_pending)) {
    return MakeError(wire::ErrorCode::kWrongState, "stdin of session " + id + " is closed",
                     "/session");
  }
  if (s->stdin_pending.size() + data.size() > options_.stdin_buffer_bytes) {
    return MakeError(wire::ErrorCode::kCapacity,
                     "stdin buffer of session " + id + " is full (the command is not reading)");
  }
  s->stdin_pending.insert(s->stdin_pending.end(), data.begin(), data.end());
  Audit("stdin", id, peer, "ok", std::to_string(data.size()) + " bytes");
  ResetIdleTimer(*s);
  FlushStdin(*s);
  return std::monostate{};
}

Answer<std::monostate> SessionManager::CloseStdin(const std::string& id, const PeerInfo& peer) {
  Session* s = Find(id);
  if (s == nullptr) return MakeError(wire::ErrorCode::kNotFound, "no session " + id, "/session");
  if (s->ended || !s->child) {
    return MakeError(wire::ErrorCode::kWrongState, "session " + id + " has ended", "/session");
  }
  Audit("close_stdin", id, peer, "ok", "");
  if (s->child->pty_master) {
    // A terminal has no separate stdin to close: send EOF (^D) as a terminal would.
    s->stdin_pending.push_back(0x04);
  } else {
    s->stdin_close_pending = true;
  }
  FlushStdin(*s);
  return std::monostate{};
}

Answer<std::monostate> SessionManager::Resize(const std::string& id, wire::PtySize size,
                                              const PeerInfo& peer) {
  Session* s = Find(id);
  if (s == nullptr) return MakeError(wire::ErrorCode::kNotFound, "no session " + id, "/session");
  if (s->ended || !s->child) {
    return MakeError(wire::ErrorCode::kWrongState, "session " + id + " has ended", "/session");
  }
  if (!s->child->pty_master) {
    return MakeError(wire::ErrorCode::kWrongState, "session " + id + " has no terminal",
                     "/session");
  }
  struct winsize ws {};
  ws.ws_row = static_cast<unsigned short>(size.rows);
  ws.ws_col = static_cast<unsigned short>(size.cols);
  // The kernel sends SIGWINCH to the terminal's foreground process group.
  if (::ioctl(s->child->pty_master.get(), TIOCSWINSZ, &ws) != 0) {
    return MakeError(wire::ErrorCode::kInternal, ErrnoError("ioctl(TIOCSWINSZ)").ToString());
  }
  s->info.pty = size;
  Audit("resize", id, peer, "ok", std::to_string(size.rows) + "x" + std::to_string(size.cols));
  return std::monostate{};
}

Answer<std::monostate> SessionManager::CheckSubscribe(const std::string& id,
                                                      std::optional<uint64_t> since) const {
  const Session* s = Find(id);
  if (s == nullptr) return MakeError(wire::ErrorCode::kNotFound, "no session " + id, "/session");
  const uint64_t total = s->log ? s->log->total() : 0;
  if (since && *since > total) {
    return MakeError(wire::ErrorCode::kBadRequest,
                     "since " + std::to_string(*since) + " is past the end of the output (" +
                         std::to_string(total) + " bytes)",
                     "/since");
  }
  return std::monostate{};
}

Answer<std::monostate> SessionManager::Subscribe(uint64_t connection, const std::string& id,
                                                 std::optional<uint64_t> since) {
  auto check = CheckSubscribe(id, since);
  if (std::holds_alternative<wire::ErrorBody>(check)) return check;
  Session* s = Find(id);
  const uint64_t total = s->log ? s->log->total() : 0;
  Subscription& sub = s->subs[connection];
  sub.next = since.value_or(total);
  sub.exit_sent = false;
  Pump(*s, connection, sub);
  return std::monostate{};
}

Answer<std::monostate> SessionManager::Unsubscribe(uint64_t connection, const std::string& id) {
  Session* s = Find(id);
  if (s == nullptr) return MakeError(wire::ErrorCode::kNotFound, "no session " + id, "/session");
  s->subs.erase(connection);
  return std::monostate{};
}

void SessionManager::Pump(Session& s, uint64_t connection, Subscription& sub) {
  if (!s.log) return;
  while (sub.next < s.log->total() && sink_.CanSend(connection)) {
    if (sub.next < s.log->first_held()) {
      sink_.Send(connection, wire::GapEvent{s.info.id, {sub.next, s.log->first_held()}});
      sub.next = s.log->first_held();
      continue;
    }
    auto read = s.log->Read(sub.next, wire::kMaxChunkBytes);
    if (!read || read->next <= sub.next) break;
    for (const auto& gap : read->gaps) {
      sink_.Send(connection, wire::GapEvent{s.info.id, gap});
    }
    size_t pos = 0;
    for (const auto& chunk : read->chunks) {
      wire::OutputEvent ev;
      ev.session = s.info.id;
      ev.stream = chunk.stream;
      ev.offset = chunk.offset;
      if (read->chunks.size() == 1) {
        ev.data = std::move(read->data);  // the usual case: one chunk, no copy
      } else {
        ev.data.assign(read->data.begin() + static_cast<ptrdiff_t>(pos),
                       read->data.begin() + static_cast<ptrdiff_t>(pos + chunk.length));
      }
      pos += chunk.length;
      sink_.Send(connection, ev);
    }
    sub.next = read->next;
  }
  if (s.ended && !sub.exit_sent && sub.next >= s.log->total() && sink_.CanSend(connection)) {
    sink_.Send(connection, wire::ExitEvent{s.info.id, *s.info.end});
    sub.exit_sent = true;
  }
}

void SessionManager::PumpAll(Session& s) {
  for (auto& [conn, sub] : s.subs) Pump(s, conn, sub);
}

void SessionManager::OnDisconnect(uint64_t connection) {
  for (auto& [id, s] : sessions_) s->subs.erase(connection);
}

void SessionManager::OnDrained(uint64_t connection) {
  for (auto& [id, s] : sessions_) {
    auto it = s->subs.find(connection);
    if (it != s->subs.end()) Pump(*s, connection, it->second);
  }
}

Answer<wire::OutputRead> SessionManager::ReadOutput(const std::string& id, uint64_t since,
                                                    uint32_t limit) const {
  const Session* s = Find(id);
  if (s == nullptr) return MakeError(wire::ErrorCode::kNotFound, "no session " + id, "/session");
  if (!s->log)
    return MakeError(wire::ErrorCode::kNotFound, "session " + id + " has no output record");
  if (since > s->log->total()) {
    return MakeError(wire::ErrorCode::kBadRequest,
                     "since " + std::to_string(since) + " is past the end of the output (" +
                         std::to_string(s->log->total()) + " bytes)",
                     "/since");
  }
  auto r = s->log->Read(since, limit);
  if (!r) return MakeError(wire::ErrorCode::kInternal, r.error().ToString());
  r->ended = s->ended;
  return std::move(*r);
}

wire::PolicyList SessionManager::Policies(const wire::PoliciesRequest& req) const {
  std::vector<wire::PolicyInfo> all;  // in name order: policies_.all() is a sorted map
  for (const auto& [name, p] : policies_.all()) {
    wire::PolicyInfo info;
    info.name = name;
    info.type = ToWire(p->type);
    info.description = p->description.substr(0, wire::kMaxDescriptionBytes);
    info.bypasses_agent_permissions = p->bypasses_agent_permissions;
    info.memory_max_bytes = p->limits.memory_max_bytes;
    info.pids_max = p->limits.pids_max;
    info.cpu_max_percent = p->limits.cpu_max_percent;
    info.wall_seconds = p->deadlines.wall_seconds;
    info.idle_seconds = p->deadlines.idle_seconds;
    info.network = p->network == sandbox::NetworkMode::kHost ? wire::NetworkMode::kHost
                                                             : wire::NetworkMode::kNone;
    all.push_back(std::move(info));
  }
  return wire::PolicyPage(all, req.after);
}

wire::HealthInfo SessionManager::Health() const {
  wire::HealthInfo h;
  h.version = options_.supervisor_version;
  h.uptime_seconds = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count());
  h.sessions_active = static_cast<uint32_t>(active_);
  h.sessions_total = static_cast<uint32_t>(sessions_.size());
  h.max_sessions = static_cast<uint32_t>(options_.max_sessions);
  h.ready = active_ < options_.max_sessions && !policies_.all().empty();
  if (!h.ready) h.reason = active_ >= options_.max_sessions ? "at capacity" : "no policies loaded";
  return h;
}

Result<void> SessionManager::ReloadPolicies() {
  auto fresh = policies_.Reload();
  if (!fresh) return std::move(fresh).error();
  policies_ = std::move(*fresh);
  return Ok();
}

void SessionManager::KillAll() {
  std::vector<std::string> running;
  for (const auto& [id, s] : sessions_) {
    if (!s->ended && s->child) running.push_back(id);
  }
  for (const auto& id : running) {
    Session* s = Find(id);
    s->kill_reason = EndReason::kSupervisorRestart;
    (void)s->child->leaf.Kill();
    Finish(*s);  // reaps init, which the kill has ended or is ending
  }
}

}  // namespace mp::supervisor

#include "supervisor/session_manager.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <map>
#include <set>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "common/random_id.h"
#include "sandbox/spawn.h"
#include "supervisor/adoption.h"

namespace mp::supervisor {
namespace {

using wire::EndReason;
using wire::SessionState;

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

bool ValidLeafName(const std::string& name) { return wire::IsValidSessionId(name); }

// A spawn request checked against its policy and turned into a sandbox request.
struct PreparedSpawn {
  std::string preset;
  EffectivePolicy effective;
  sandbox::SpawnRequest request;  // points into `effective` (seccomp): keep them together
  std::vector<egress::HandoverEndpoint> gateway;  // with their secrets, for EgressLink only
};

}  // namespace

SessionManager::SessionManager(EventLoop& loop, sandbox::CgroupRoot cgroup_root, PolicySet policies,
                               ManagerOptions options, EventSink& sink, AuditLog& audit)
    : loop_(loop),
      cgroup_root_(std::move(cgroup_root)),
      policies_(std::move(policies)),
      options_(std::move(options)),
      audit_(audit),
      store_(options_.state_dir),
      shared_{loop,
              sink,
              options_.kill_grace,
              options_.leaf_cleanup,
              options_.stdin_buffer_bytes,
              options_.fd_store,
              !options_.test_no_output_staging},
      // The resolv.conf of allowlist sessions lives beside the records: hidden from sessions
      // (the sandbox clones bind sources before it hides), root's to write.
      egress_(loop, options_.egress_socket, options_.state_dir + "/egress-resolv.conf") {
  if (options_.session_ids) {
    // An id is taken while its leaf exists; a leaf that cannot be looked at counts as there.
    const int root = cgroup_root_.dirfd();
    id_pool_.emplace(*options_.session_ids, [root](const std::string& leaf) {
      return ::faccessat(root, leaf.c_str(), F_OK, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
    });
    // Leaves of an earlier run (sessions it left running): their processes' ids stay taken.
    for (const auto& [uid, leaf] : UidsOfLeaves(cgroup_root_.path())) id_pool_->Seed(uid, leaf);
  }
  egress_.SetReportHandler([this](const egress::VerdictReport& report, const EgressPeer& peer) {
    OnEgressReport(report, peer);
  });
}

SessionManager::~SessionManager() {
  if (egress_flush_timer_) loop_.CancelTimer(*egress_flush_timer_);
  for (const auto& [id, timer] : expiry_timers_) loop_.CancelTimer(timer);
  if (retention_timer_ != 0) loop_.CancelTimer(retention_timer_);
  sessions_.clear();  // each session takes its fds and timers off the loop
}

Session* SessionManager::Find(const std::string& id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

void CountEgressVerdict(const egress::VerdictReport& r, wire::EgressCounters& c) {
  if (r.kind == egress::VerdictKind::kDns) {
    ++(r.allowed ? c.dns_answered : c.dns_refused);
    return;
  }
  ++(r.allowed ? c.allowed : c.denied);
  // Saturating: a compromised egress daemon must not make a counter wrap and go down (review
  // rev20, F3).
  const auto add = [](uint64_t& to, uint64_t n) { to += std::min(n, UINT64_MAX - to); };
  add(c.bytes_up, r.bytes_up);
  add(c.bytes_down, r.bytes_down);
  if (r.allowed && r.kind == egress::VerdictKind::kGateway) ++c.gateway_requests;
}

AuditEntry EgressAuditEntry(const egress::VerdictReport& r, const EgressPeer& peer) {
  std::vector<AuditField> fields = {AuditField::String("kind", egress::ToString(r.kind)),
                                    AuditField::String("name", r.name),
                                    AuditField::Number("port", r.port),
                                    AuditField::String("verdict", r.allowed ? "allow" : "deny")};
  if (!r.allowed) {
    fields.push_back(AuditField::String("reason", r.reason));
  } else if (r.kind != egress::VerdictKind::kDns) {
    fields.push_back(AuditField::Number("bytes_up", r.bytes_up));
    fields.push_back(AuditField::Number("bytes_down", r.bytes_down));
  }
  return {"egress",         r.session,          "", peer.pid,
          peer.uid,         kEgressAuditClient, "", r.allowed ? "ok" : "denied",
          std::move(fields)};
}

void SessionManager::OnEgressReport(const egress::VerdictReport& r, const EgressPeer& peer) {
  const std::string id(r.session);
  Session* s = Find(id);
  wire::EgressCounters* counters = s != nullptr ? s->egress() : nullptr;
  if (counters == nullptr) return;  // not ours, or not an allowlist session: ignored
  const bool dns = r.kind == egress::VerdictKind::kDns;
  CountEgressVerdict(r, *counters);
  CountEgressVerdict(r, egress_totals_);
  egress_peer_ = peer;
  const auto now = std::chrono::steady_clock::now();
  // Denials have a budget of their own: a flood of refused connects must not hide the
  // allowed ones from the audit log (review rev20, F2).
  http::AuditThrottle& throttle =
      dns ? egress_dns_audit_ : (r.allowed ? egress_audit_ : egress_deny_audit_);
  if (!throttle.Admit(id, now)) return ArmEgressAuditFlush();
  audit_.Write(EgressAuditEntry(r, peer));
}

void SessionManager::FlushEgressAudit(std::chrono::steady_clock::time_point now) {
  for (auto [throttle, of] :
       {std::pair{&egress_audit_, "egress"}, std::pair{&egress_deny_audit_, "egress_denied"},
        std::pair{&egress_dns_audit_, "egress_dns"}}) {
    for (const http::AuditThrottle::Suppressed& held : throttle->TakeSummaries(now)) {
      const std::string session =
          held.key == http::AuditThrottle::kOtherKeys ? std::string() : held.key;
      audit_.Write({"audit_suppressed",
                    session,
                    "",
                    egress_peer_.pid,
                    egress_peer_.uid,
                    kEgressAuditClient,
                    "",
                    "ok",
                    {AuditField::String("of", of), AuditField::Number("suppressed", held.count)}});
    }
  }
  if (egress_audit_.holding() || egress_deny_audit_.holding() || egress_dns_audit_.holding()) {
    ArmEgressAuditFlush();
  }
}

void SessionManager::ArmEgressAuditFlush() {
  if (egress_flush_timer_) return;
  egress_flush_timer_ =
      loop_.AddTimer(std::max({egress_audit_.window_end(), egress_deny_audit_.window_end(),
                               egress_dns_audit_.window_end()}),
                     [this] {
                       egress_flush_timer_.reset();
                       FlushEgressAudit(std::chrono::steady_clock::now());
                     });
}

Answer<Session*> SessionManager::Lookup(const std::string& id) const {
  Session* s = Find(id);
  if (s == nullptr) return MakeError(wire::ErrorCode::kNotFound, "no session " + id, "/session");
  return s;
}

void SessionManager::Audit(std::string_view action, const std::string& session,
                           const PeerInfo& peer, std::string_view outcome,
                           std::vector<AuditField> fields) {
  audit_.Write({action, session, peer.principal, peer.pid, peer.uid, peer.client, peer.via, outcome,
                std::move(fields)});
}

Result<std::vector<sd::ListenedFd>> SessionManager::Recover(
    const std::vector<sd::ListenedFd>& listened) {
  std::vector<sd::ListenedFd> foreign;
  std::map<std::string, StoredFds> stored;
  if (options_.fd_store != nullptr) {
    stored = GroupStoredFds(listened, &foreign);
  } else {
    foreign = listened;  // nothing could be stored again: the caller releases them
  }
  std::set<std::string> to_adopt;
  for (const auto& [id, fds] : stored) to_adopt.insert(id);
  MP_TRY(auto recovered, store_.Recover(to_adopt));
  std::set<std::string> adopted;
  for (auto& r : recovered) {
    const std::string id = r.info.id;
    if (!r.info.end) {
      if (auto a = Adopt(r, stored[id]); a) {
        adopted.insert(id);
        ++readopted_;
        continue;
      } else {
        ++readoption_failures_;
        std::fprintf(stderr, "monkeyproofd: session %s: not re-adopted: %s\n", id.c_str(),
                     a.error().ToString().c_str());
        if (const uint64_t saved = SalvageOutput(r, stored[id]); saved > 0) {
          std::fprintf(stderr,
                       "monkeyproofd: session %s: %llu bytes of output it wrote while no "
                       "supervisor ran went to its transcript before it ended\n",
                       id.c_str(), static_cast<unsigned long long>(saved));
        }
        SessionStore::EndAsRestart(
            r.info,
            "the supervisor restarted while the session ran, and the next one could "
            "not take it over: " +
                a.error().ToString());
        store_.Write(r.info);
      }
    }
    auto s = std::make_unique<Session>(shared_, std::move(r.info), std::move(r.log));
    Session& ref = *s;
    order_.push_back(id);
    sessions_.emplace(id, std::move(s));
    ScheduleExpiry(ref);
  }
  // Leaves of an earlier run: kill every process in them, then remove them. This runs before
  // the loop serves anyone, so it may wait.
  if (DIR* d = ::opendir(cgroup_root_.path().c_str())) {
    std::vector<std::string> leaves;
    while (const dirent* e = ::readdir(d)) {
      if (e->d_type == DT_DIR && ValidLeafName(e->d_name) && !adopted.contains(e->d_name)) {
        leaves.emplace_back(e->d_name);
      }
    }
    ::closedir(d);
    for (const auto& name : leaves) {
      auto leaf = sandbox::CgroupLeaf::OpenExisting(cgroup_root_, name);
      if (!leaf) continue;
      auto done = sandbox::FinishLeaf(*leaf, options_.leaf_cleanup);
      std::fprintf(stderr, "monkeyproofd: recovered leaf %s: %s\n", name.c_str(),
                   done ? "killed and removed" : done.error().ToString().c_str());
    }
  }
  // The fds of sessions not adopted: closed (their UniqueFds) and released from the store,
  // after their leaves were killed.
  size_t released = 0, of_sessions = 0;
  for (auto& [id, fds] : stored) {
    if (adopted.contains(id)) continue;
    for (const auto& name : fds.names) options_.fd_store->RemoveName(name);
    released += fds.names.size();
    ++of_sessions;
  }
  if (released > 0) {
    std::fprintf(stderr,
                 "monkeyproofd: fd store: closed and released %zu descriptors of %zu sessions "
                 "that were not re-adopted\n",
                 released, of_sessions);
  }
  stored.clear();
  if (readopted_ + readoption_failures_ > 0) {
    std::fprintf(stderr, "monkeyproofd: re-adopted %u running sessions, %u could not be\n",
                 readopted_, readoption_failures_);
  }
  EnforceRetention(nullptr);
  return foreign;
}

Result<void> SessionManager::Adopt(SessionStore::Recovered& r, StoredFds& fds) {
  const std::string id = r.info.id;
  if (fds.fds.empty()) return PlainError("no fds of it in the fd store");
  MP_TRY(const AdoptionRecord record, ReadAdoptionRecord(store_.SessionDir(id)));
  MP_TRY(auto child, AdoptChild(cgroup_root_, id, record, fds));
  // The transcript, with the session's own limits (Recover opened it with the defaults).
  OutputLogOptions log_options;
  log_options.ring_bytes = record.output.ring_bytes;
  log_options.transcript_max_bytes = record.output.transcript_max_bytes;
  const std::string output_dir = store_.SessionDir(id) + "/output";
  r.log.reset();
  auto log = OutputLog::Open(output_dir, log_options);
  if (!log) {
    if (auto again = OutputLog::Open(output_dir, {})) r.log = std::move(*again);  // for reading
    return std::move(log).error().Wrap("the transcript");
  }
  for (const auto& note : (*log)->recovery_notes()) {
    std::fprintf(stderr, "monkeyproofd: session %s: transcript: %s\n", id.c_str(), note.c_str());
  }
  r.info.output_bytes = (*log)->total();
  EffectivePolicy policy;
  policy.policy.name = record.policy_name;
  policy.policy.type = r.info.type;
  policy.policy.deadlines = record.deadlines;
  policy.policy.output = record.output;
  // Its egress counters start again from zero: they were in the last supervisor's memory only.
  if (record.egress_allow) r.info.egress = wire::EgressCounters{};
  auto owned =
      std::make_unique<Session>(shared_, std::move(r.info), std::move(policy), std::move(*log));
  Session& s = *owned;
  order_.push_back(id);
  sessions_.emplace(id, std::move(owned));
  ++active_;
  if (record.egress_allow) {
    // Before s.Adopt: a session whose command ended meanwhile ends inside it (OnEnded).
    auto endpoints = ReadGatewayEndpoints(record.egress_gateway, options_.host, "session " + id);
    auto resumed =
        endpoints ? egress_.Resume(id, *record.egress_allow, std::move(*endpoints), child.init.fd())
                  : Result<void>(std::move(endpoints).error());
    if (!resumed) {
      std::fprintf(stderr,
                   "monkeyproofd: session %s: re-adopted without its egress listeners (its "
                   "connections fail closed): %s\n",
                   id.c_str(), resumed.error().ToString().c_str());
    }
  }
  std::optional<OutputStage> stage;
  if (auto it = fds.fds.find(sd::FdKind::kStage); it != fds.fds.end()) {
    auto adopted = OutputStage::Adopt(std::move(it->second));
    if (adopted) {
      stage.emplace(std::move(*adopted));
    } else {
      std::fprintf(stderr, "monkeyproofd: session %s: output stage: %s\n", id.c_str(),
                   adopted.error().ToString().c_str());
    }
  }
  UniqueFd pty_queue;
  if (auto it = fds.fds.find(sd::FdKind::kPtyQueue); it != fds.fds.end()) {
    auto adopted = AdoptPtyQueue(std::move(it->second));
    if (adopted) {
      pty_queue = std::move(*adopted);
    } else {
      std::fprintf(stderr, "monkeyproofd: session %s: PTY queue: %s\n", id.c_str(),
                   adopted.error().ToString().c_str());
    }
  }
  Session::Callbacks callbacks;
  callbacks.on_ended = [this](Session& x) { OnEnded(x); };
  s.Adopt(std::move(child), record, std::move(callbacks), std::move(stage), std::move(pty_queue));
  if (!s.ended()) store_.Write(s.info());  // its supervisor_restarts (OnEnded wrote an end)
  return Ok();
}

uint64_t SessionManager::SalvageOutput(SessionStore::Recovered& r, StoredFds& fds) {
  const std::string& id = r.info.id;
  if (!r.log || fds.fds.empty()) return 0;
  // Its processes first: once the leaf is empty nobody writes its pipes or its terminal, and
  // they read to their end.
  if (auto leaf = sandbox::CgroupLeaf::OpenExisting(cgroup_root_, id)) {
    auto done = sandbox::FinishLeaf(*leaf, options_.leaf_cleanup);
    std::fprintf(stderr, "monkeyproofd: session %s: leaf %s\n", id.c_str(),
                 done ? "killed and removed" : done.error().ToString().c_str());
  }
  const uint64_t before = r.log->total();
  auto take = [&](sd::FdKind kind) {
    auto it = fds.fds.find(kind);
    return it == fds.fds.end() ? UniqueFd() : std::move(it->second);
  };
  // The names out, err, pty, stage and ptyq mean the same in every adoption format
  // (adoption.h), so a supervisor that refuses a session's format still reads them.
  if (UniqueFd fd = take(sd::FdKind::kStage)) {
    auto stage = OutputStage::Adopt(std::move(fd));
    auto recovered = stage ? RecoverStaged(*stage, *r.log) : Result<StageRecovery>(stage.error());
    if (!recovered || recovered->outcome != StageRecovery::Outcome::kEmpty) {
      std::fprintf(stderr, "monkeyproofd: session %s: output stage: %s\n", id.c_str(),
                   recovered ? recovered->note.c_str() : recovered.error().ToString().c_str());
    }
  }
  const std::pair<sd::FdKind, wire::OutputStream> streams[] = {
      {sd::FdKind::kPtyQueue, wire::OutputStream::kPty},
      {sd::FdKind::kPty, wire::OutputStream::kPty},
      {sd::FdKind::kOut, wire::OutputStream::kStdout},
      {sd::FdKind::kErr, wire::OutputStream::kStderr}};
  std::vector<uint8_t> buf(size_t{64} * 1024);
  // What a pipe (1 MiB) or a terminal can hold, twice over: a writer the leaf's kill missed
  // cannot keep the supervisor here.
  constexpr uint64_t kMaxPerFd = uint64_t{2} << 20;
  for (const auto& [kind, stream] : streams) {
    UniqueFd fd = take(kind);
    if (!fd) continue;
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags >= 0) (void)::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
    for (uint64_t got = 0; got < kMaxPerFd;) {
      const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // its end (0, or EIO from a terminal), or nothing more (EAGAIN)
      got += static_cast<uint64_t>(n);
      if (auto appended = r.log->Append(stream, buf.data(), static_cast<size_t>(n)); !appended) {
        std::fprintf(stderr, "monkeyproofd: session %s: transcript: %s\n", id.c_str(),
                     appended.error().ToString().c_str());
        break;
      }
    }
  }
  r.info.output_bytes = r.log->total();
  return r.log->total() - before;
}

namespace {

wire::ErrorBody FromError(const Error& e) {
  // A request's own mistakes read as one sentence; the host's failures keep their errno.
  const bool host = e.code == wire::ErrorCode::kInternal || e.code == wire::ErrorCode::kHostSetup;
  return MakeError(e.code, host ? e.ToString() : e.what, e.field);
}

// The state directory's file system as an operator finds it: "<dir> (ext4, 0 bytes and 12
// inodes free)".
std::string DescribeFileSystem(const std::string& dir) {
  struct statfs fs {};
  struct statvfs vfs {};
  if (::statfs(dir.c_str(), &fs) != 0 || ::statvfs(dir.c_str(), &vfs) != 0) return dir;
  std::string kind;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case 0xEF53:
      kind = "ext4";
      break;
    case 0x58465342:
      kind = "xfs";
      break;
    case 0x9123683E:
      kind = "btrfs";
      break;
    case 0x01021994:
      kind = "tmpfs";
      break;
    case 0x794C7630:
      kind = "overlayfs";
      break;
    default: {
      char hex[32];
      std::snprintf(hex, sizeof hex, "file system type 0x%lx",
                    static_cast<unsigned long>(fs.f_type));
      kind = hex;
    }
  }
  return dir + " (" + kind + ", " +
         std::to_string(static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize) + " bytes and " +
         std::to_string(static_cast<uint64_t>(vfs.f_favail)) + " inodes free)";
}

// A failure to write a new session's files under the state directory: insufficient_storage,
// naming the file system, when it is full (blocks or inodes) or over a quota; else internal.
wire::ErrorBody StorageError(const Error& e, const std::string& state_dir) {
  if (e.errnum != ENOSPC && e.errnum != EDQUOT) {
    return MakeError(wire::ErrorCode::kInternal, e.ToString());
  }
  return MakeError(wire::ErrorCode::kInsufficientStorage,
                   "insufficient storage for a new session in the state directory " +
                       DescribeFileSystem(state_dir) + ": " + e.ToString() +
                       "; free space or inodes there (ended sessions' transcripts: DELETE "
                       "/sessions/:id), or raise its quota, then retry");
}

bool Contains(const std::vector<SessionType>& types, SessionType t) {
  return std::find(types.begin(), types.end(), t) != types.end();
}

Answer<PreparedSpawn> Prepare(const wire::SpawnRequest& req, const PolicySet& policies,
                              const SpawnHost& host) {
  const std::string type(wire::ToString(req.type));
  // Which policy: the preset, else "exec" for exec sessions and for print and interactive
  // sessions that bring their own command (when exec.json allows it, below).
  const bool own_command = req.command.has_value() || req.args.has_value();
  std::string preset_name;
  if (req.preset) {
    preset_name = *req.preset;
  } else if (req.type == wire::SessionType::kExec || own_command) {
    preset_name = "exec";
  } else {
    return MakeError(wire::ErrorCode::kBadRequest,
                     type +
                         " sessions need a preset (GET /policies lists them) or their own "
                         "command",
                     "/preset");
  }
  auto policy = policies.Find(preset_name);
  if (!policy) {
    return MakeError(wire::ErrorCode::kNotFound,
                     "unknown preset \"" + preset_name + "\" (GET /policies lists them)",
                     "/preset");
  }
  if (policy->type != req.type) {
    const bool allowed = own_command && Contains(policy->own_command_types, req.type);
    if (!allowed) {
      const std::string of_policy = "policy \"" + preset_name + "\"";
      if (!req.preset) {
        return MakeError(wire::ErrorCode::kPolicyViolation,
                         type + " sessions with their own command are not allowed here: " +
                             of_policy + " does not list \"" + type +
                             "\" in own_command_types; use a preset, or ask the operator to add "
                             "it (docs/policies.md)",
                         "/command");
      }
      return MakeError(wire::ErrorCode::kBadRequest,
                       "preset \"" + preset_name + "\" is for " +
                           std::string(ToString(policy->type)) + " sessions, not " + type,
                       "/session_type");
    }
  }
  auto effective = Tighten(*policy, req.limits.value_or(RequestedLimits{}));
  if (!effective) return MakeError(effective.error().code, effective.error().what, "/limits");
  effective->policy.type = req.type;
  SessionLaunch launch;
  launch.task = req.task;
  launch.cwd = req.cwd.value_or("");
  launch.cwd_within = req.cwd_within;
  launch.command = req.command;
  launch.args = req.args;
  for (const auto& [k, v] : req.env) launch.env[k] = v;
  auto spawn_req = BuildSpawnRequest(*effective, launch, host);
  if (!spawn_req) return FromError(spawn_req.error());
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

  auto gateway =
      ReadGatewayEndpoints(effective->policy.gateway, host, "policy \"" + preset_name + "\"");
  if (!gateway) return FromError(gateway.error());
  return PreparedSpawn{preset_name, std::move(*effective), std::move(*spawn_req),
                       std::move(*gateway)};
}

}  // namespace

void SessionManager::Spawn(const wire::SpawnRequest& req, const PeerInfo& peer, SpawnDone done) {
  auto fail = [&](const wire::ErrorBody& e) {
    Audit("spawn", "", peer, wire::ToString(e.code),
          {AuditField::String("preset", req.preset.value_or("")),
           AuditField::String("owner", req.owner), AuditField::Strings("labels", req.labels),
           AuditField::String("error", e.message)});
    done(Answer<wire::SessionInfo>(e));
  };
  if (active_ >= options_.max_sessions) {
    return fail(MakeError(wire::ErrorCode::kCapacity,
                          "at capacity: " + std::to_string(active_) + " of " +
                              std::to_string(options_.max_sessions) + " sessions are running"));
  }
  auto prepared = Prepare(req, policies_, options_.host);
  if (auto* e = std::get_if<wire::ErrorBody>(&prepared)) return fail(*e);
  auto& p = std::get<PreparedSpawn>(prepared);
  if (!options_.test_stall_spawn_task.empty() && req.task == options_.test_stall_spawn_task) {
    p.request.stall_before_start_report = true;
  }
  p.request.outlive_supervisor = options_.fd_store != nullptr;

  auto random = common::RandomId(common::kAlnumAlphabet, 20);
  if (!random) return fail(MakeError(wire::ErrorCode::kInternal, random.error().ToString()));
  wire::SessionInfo info;
  info.id = "s-" + *random;
  if (id_pool_) {
    auto uid = id_pool_->Acquire(info.id);  // held until the leaf named info.id is gone
    if (!uid) return fail(MakeError(wire::ErrorCode::kCapacity, uid.error().what));
    if (auto r = UseSessionIds(p.effective.policy, options_.host, *uid, &p.request); !r) {
      return fail(FromError(r.error()));
    }
  }
  info.state = SessionState::kStarting;
  info.type = req.type;
  if (req.preset) info.preset = req.preset;
  info.task_preview = Preview(req.task);
  info.cwd = p.request.workspace;
  info.command = DisplayCommand(p.request.argv);
  info.created_at_ms = WallClockMs();
  info.owner = req.owner;
  info.labels = req.labels;
  info.created_by = req.principal;
  if (p.request.stdio == sandbox::StdioMode::kPty) {
    info.pty = wire::PtySize{p.request.pty_rows, p.request.pty_cols};
  }
  if (auto r = store_.CreateSessionDir(info.id); !r) {
    return fail(StorageError(r.error(), options_.state_dir));
  }
  OutputLogOptions log_options;
  log_options.ring_bytes = p.effective.policy.output.ring_bytes;
  log_options.transcript_max_bytes = p.effective.policy.output.transcript_max_bytes;
  auto log = OutputLog::Create(store_.SessionDir(info.id) + "/output", log_options);
  if (!log) {
    store_.Remove(info.id, nullptr);
    return fail(StorageError(log.error(), options_.state_dir));
  }
  // A record from the start: a supervisor that dies while the child starts finds it on
  // restart (ended as supervisor_restart) instead of a directory without one. A session
  // without one is not started.
  if (auto r = store_.TryWrite(info); !r) {
    store_.Remove(info.id, log->get());
    return fail(StorageError(r.error(), options_.state_dir));
  }
  if (p.effective.policy.network == wire::NetworkMode::kAllowlist) {
    std::vector<std::string> allow;
    for (const auto& rule : p.effective.policy.network_allow.rules()) {
      allow.push_back(rule.ToString());
    }
    if (auto r = egress_.Begin(info.id, std::move(allow), std::move(p.gateway), p.request); !r) {
      return fail(MakeError(wire::ErrorCode::kInternal, r.error().ToString()));
    }
    info.egress = wire::EgressCounters{};
  }

  const std::string id = info.id;
  // The sandbox request points into the session's copy of the effective policy (seccomp).
  auto owned =
      std::make_unique<Session>(shared_, std::move(info), std::move(p.effective), std::move(*log));
  Session& s = *owned;
  order_.push_back(id);
  sessions_.emplace(id, std::move(owned));
  ++active_;
  Session::Callbacks callbacks;
  callbacks.on_started = [this, peer, preset = p.preset, done = std::move(done)](
                             Session& x) mutable { OnStarted(x, peer, preset, done); };
  callbacks.on_ended = [this](Session& x) { OnEnded(x); };
  s.Start(cgroup_root_, p.request, options_.spawn_timeout, std::move(callbacks));
}

void SessionManager::OnStarted(Session& s, const PeerInfo& peer, const std::string& preset,
                               SpawnDone& done) {
  const wire::SessionInfo& info = s.info();
  std::vector<AuditField> fields = {
      AuditField::String("preset", preset), AuditField::String("owner", info.owner),
      AuditField::Strings("labels", info.labels), AuditField::String("cwd", info.cwd),
      AuditField::String("command", info.command)};
  if (s.ended()) {
    // The record stays, inspectable, with the step that failed (OnEnded wrote it).
    fields.push_back(AuditField::String("error", info.end->detail));
    Audit("spawn", s.id(), peer, wire::ToString(info.end->reason), std::move(fields));
  } else {
    store_.Write(info);
    if (options_.fd_store != nullptr) {
      // What the next supervisor needs to take the session over; a session without it is
      // ended by the next start instead.
      if (auto w = WriteAdoptionRecord(store_.SessionDir(s.id()), s.AdoptionInfo()); !w) {
        std::fprintf(stderr, "monkeyproofd: session %s: adoption record: %s\n", s.id().c_str(),
                     w.error().ToString().c_str());
      }
    }
    Audit("spawn", s.id(), peer, "ok", std::move(fields));
  }
  EnforceRetention(&s);
  done(Answer<wire::SessionInfo>(s.info()));
}

void SessionManager::OnEnded(Session& s) {
  --active_;
  egress_.End(s.id());
  store_.Write(s.info());
  ScheduleExpiry(s);
  EnforceRetention(&s);
}

void SessionManager::ScheduleExpiry(Session& s) {
  const auto ttl = s.info().type == wire::SessionType::kInteractive ? options_.interactive_ended_ttl
                                                                    : options_.ended_ttl;
  const std::string id = s.id();
  const uint64_t now = WallClockMs();
  const uint64_t ended = s.info().end ? s.info().end->ended_at_ms : now;
  expiry_timers_[id] = loop_.AddTimer(ExpiryDelay(ended, ttl, now), [this, id] {
    expiry_timers_.erase(id);
    Forget(id);
  });
}

void SessionManager::Forget(const std::string& id) {
  Session* s = Find(id);
  if (s == nullptr || !s->ended()) return;
  if (auto it = expiry_timers_.find(id); it != expiry_timers_.end()) {
    loop_.CancelTimer(it->second);
    expiry_timers_.erase(it);
  }
  store_.Remove(id, s->log());
  sessions_.erase(id);
  order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
}

void SessionManager::EnforceRetention(const Session* in_callback) {
  std::vector<RetentionEntry> entries;
  entries.reserve(order_.size());
  for (const auto& id : order_) {
    const Session* s = Find(id);
    if (s == nullptr) continue;
    RetentionEntry e{id, s->ended(), 0};
    if (s->ended() && s->log() != nullptr) {
      e.held_output_bytes = s->log()->total() - s->log()->first_held();
    }
    entries.push_back(std::move(e));
  }
  const RetentionLimits limits{options_.max_ended_records, options_.max_ended_output_bytes};
  for (const auto& id : RetentionVictims(entries, limits)) {
    if (in_callback != nullptr && id == in_callback->id()) {
      // Not from inside its own callback: once that has returned.
      if (retention_timer_ == 0) {
        retention_timer_ = loop_.AddTimer(std::chrono::milliseconds(0), [this] {
          retention_timer_ = 0;
          EnforceRetention(nullptr);
        });
      }
      continue;
    }
    Forget(id);
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
    if (req.owner && s->info().owner != *req.owner) continue;
    if (req.state && s->info().state != *req.state) continue;
    if (req.label && std::find(s->info().labels.begin(), s->info().labels.end(), *req.label) ==
                         s->info().labels.end()) {
      continue;
    }
    if (out.sessions.size() == limit) {
      out.more = true;
      break;
    }
    out.sessions.push_back(s->info());
  }
  return out;
}

Answer<wire::SessionInfo> SessionManager::Get(const std::string& id) const {
  auto found = Lookup(id);
  if (auto* e = std::get_if<wire::ErrorBody>(&found)) return std::move(*e);
  return std::get<Session*>(found)->info();
}

void SessionManager::AuditApiAction(const wire::AuditRequest& request, const PeerInfo& peer) {
  PeerInfo who = peer;
  who.principal = request.principal;
  who.client = request.client;
  who.via = request.via;
  std::vector<AuditField> fields;
  switch (request.action) {
    case wire::AuditAction::kTokenCreate:
    case wire::AuditAction::kTokenRevoke:
      fields.push_back(AuditField::String("token", request.token));
      break;
    case wire::AuditAction::kRead:
      fields.push_back(AuditField::String("route", request.route));
      break;
    case wire::AuditAction::kAuthFailed:
      fields.push_back(AuditField::String("reason", wire::ToString(*request.reason)));
      fields.push_back(AuditField::String("route", request.route));
      break;
    case wire::AuditAction::kRateLimited:
      fields.push_back(AuditField::String("route", request.route));
      break;
    case wire::AuditAction::kSuppressed:
      fields.push_back(AuditField::String("of", wire::ToString(*request.of)));
      fields.push_back(AuditField::Number("suppressed", request.count));
      break;
  }
  // The API's own events have no outcome of an action the supervisor took: "ok" means
  // written, the refusals say what the API answered.
  std::string_view outcome = "ok";
  if (request.action == wire::AuditAction::kAuthFailed) outcome = "unauthorized";
  if (request.action == wire::AuditAction::kRateLimited) outcome = "rate_limited";
  Audit(wire::ToString(request.action), request.session, who, outcome, std::move(fields));
}

Answer<wire::SessionInfo> SessionManager::Kill(const std::string& id, const PeerInfo& peer) {
  auto found = Lookup(id);
  if (auto* e = std::get_if<wire::ErrorBody>(&found)) return std::move(*e);
  Session& s = *std::get<Session*>(found);
  Audit("kill", id, peer, "ok", {AuditField::Bool("already_ended", s.ended())});
  s.BeginKill(EndReason::kKilledByRequest, KillMode::kGraceful);
  return s.info();
}

Answer<std::monostate> SessionManager::Signal(const std::string& id, int signo,
                                              const PeerInfo& peer) {
  auto found = Lookup(id);
  if (auto* e = std::get_if<wire::ErrorBody>(&found)) return std::move(*e);
  Session& s = *std::get<Session*>(found);
  auto r = s.Signal(signo);
  if (auto* e = std::get_if<wire::ErrorBody>(&r);
      e == nullptr || e->code == wire::ErrorCode::kInternal) {
    Audit("signal", id, peer, e == nullptr ? "ok" : "internal",
          {AuditField::Number("signal", static_cast<uint64_t>(signo))});
  }
  return r;
}

Answer<std::monostate> SessionManager::Stdin(const std::string& id,
                                             const std::vector<uint8_t>& data,
                                             const PeerInfo& peer) {
  auto found = Lookup(id);
  if (auto* e = std::get_if<wire::ErrorBody>(&found)) return std::move(*e);
  auto r = std::get<Session*>(found)->QueueStdin(data);
  if (std::holds_alternative<std::monostate>(r)) {
    Audit("stdin", id, peer, "ok", {AuditField::Number("bytes", data.size())});
  }
  return r;
}

Answer<std::monostate> SessionManager::CloseStdin(const std::string& id, const PeerInfo& peer) {
  auto found = Lookup(id);
  if (auto* e = std::get_if<wire::ErrorBody>(&found)) return std::move(*e);
  auto r = std::get<Session*>(found)->CloseStdin();
  if (std::holds_alternative<std::monostate>(r)) Audit("close_stdin", id, peer, "ok");
  return r;
}

Answer<std::monostate> SessionManager::Resize(const std::string& id, wire::PtySize size,
                                              const PeerInfo& peer) {
  auto found = Lookup(id);
  if (auto* e = std::get_if<wire::ErrorBody>(&found)) return std::move(*e);
  auto r = std::get<Session*>(found)->Resize(size);
  if (std::holds_alternative<std::monostate>(r)) {
    Audit("resize", id, peer, "ok",
          {AuditField::Number("rows", size.rows), AuditField::Number("cols", size.cols)});
  }
  return r;
}

Answer<std::monostate> SessionManager::CheckSubscribe(const std::string& id,
                                                      std::optional<uint64_t> since) const {
  auto found = Lookup(id);
  if (auto* e = std::get_if<wire::ErrorBody>(&found)) return std::move(*e);
  return std::get<Session*>(found)->CheckSubscribe(since);
}

Answer<std::monostate> SessionManager::Subscribe(uint64_t connection, const std::string& id,
                                                 std::optional<uint64_t> since) {
  auto check = CheckSubscribe(id, since);
  if (std::holds_alternative<wire::ErrorBody>(check)) return check;
  Find(id)->Subscribe(connection, since);
  return std::monostate{};
}

Answer<std::monostate> SessionManager::Unsubscribe(uint64_t connection, const std::string& id) {
  auto found = Lookup(id);
  if (auto* e = std::get_if<wire::ErrorBody>(&found)) return std::move(*e);
  std::get<Session*>(found)->Unsubscribe(connection);
  return std::monostate{};
}

void SessionManager::OnDisconnect(uint64_t connection) {
  for (auto& [id, s] : sessions_) s->Unsubscribe(connection);
}

void SessionManager::OnDrained(uint64_t connection) {
  for (auto& [id, s] : sessions_) s->OnDrained(connection);
}

Answer<wire::OutputRead> SessionManager::ReadOutput(const std::string& id, uint64_t since,
                                                    uint32_t limit) const {
  auto found = Lookup(id);
  if (auto* e = std::get_if<wire::ErrorBody>(&found)) return std::move(*e);
  return std::get<Session*>(found)->ReadOutput(since, limit);
}

wire::PolicyList SessionManager::Policies(const wire::PoliciesRequest& req) const {
  std::vector<wire::PolicyInfo> all;  // in name order: policies_.all() is a sorted map
  for (const auto& [name, p] : policies_.all()) {
    wire::PolicyInfo info;
    info.name = name;
    info.type = p->type;
    info.description = p->description.substr(0, wire::kMaxDescriptionBytes);
    info.bypasses_agent_permissions = p->bypasses_agent_permissions;
    info.memory_max_bytes = p->limits.memory_max_bytes;
    info.pids_max = p->limits.pids_max;
    info.cpu_max_percent = p->limits.cpu_max_percent;
    info.wall_seconds = p->deadlines.wall_seconds;
    info.idle_seconds = p->deadlines.idle_seconds;
    info.network = p->network;
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
  h.sessions_readopted = readopted_;
  h.readoption_failures = readoption_failures_;
  h.egress =
      wire::EgressTotals{egress_totals_, egress_.reports_dropped(), egress_.reports_refused()};
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

void SessionManager::KillAll() { EndForShutdown(/*keep_running=*/false); }

void SessionManager::Detach() { EndForShutdown(/*keep_running=*/true); }

void SessionManager::EndForShutdown(bool keep_running) {
  std::vector<std::string> live;
  for (const auto& [id, s] : sessions_) {
    if (!s->ended() && s->has_process() && !(keep_running && s->running())) live.push_back(id);
  }
  // Every session is killed first, so they die together; then each is finished.
  for (const auto& id : live) {
    if (Session* s = Find(id)) s->KillForShutdown();
  }
  for (const auto& id : live) {
    if (Session* s = Find(id)) s->KillNow(EndReason::kSupervisorRestart);
  }
}

}  // namespace mp::supervisor

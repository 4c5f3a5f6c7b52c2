#include "supervisor/adoption.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "supervisor/session_store.h"

namespace mp::supervisor {
namespace {

using json = nlohmann::json;

constexpr char kFileName[] = "adopt.json";

// True when `pid` is listed in the leaf's cgroup.procs.
bool LeafHolds(const sandbox::CgroupLeaf& leaf, pid_t pid) {
  auto procs = leaf.Read("cgroup.procs");
  if (!procs) return false;
  std::istringstream in(*procs);
  pid_t p = 0;
  while (in >> p) {
    if (p == pid) return true;
  }
  return false;
}

}  // namespace

std::string AdoptionRecordPath(const std::string& session_dir) {
  return session_dir + "/" + kFileName;
}

std::string AdoptionRecordToJson(const AdoptionRecord& r) {
  json j = {{"format", r.format},
            {"init_pid", r.init_pid},
            {"running_since_ms", r.running_since_ms},
            {"pty", r.pty},
            {"policy", r.policy_name},
            {"wall_seconds", r.deadlines.wall_seconds},
            {"idle_seconds", r.deadlines.idle_seconds},
            {"ring_bytes", r.output.ring_bytes},
            {"transcript_max_bytes", r.output.transcript_max_bytes},
            {"max_rate_bytes_per_second", r.output.max_rate_bytes_per_second},
            {"max_rate_window_seconds", r.output.max_rate_window_seconds},
            {"on_flood", std::string(common::ToString(r.output.on_flood))}};
  if (r.egress_allow) j["egress_allow"] = *r.egress_allow;
  if (!r.egress_gateway.empty()) {
    json gateway = json::array();
    for (const GatewayEndpoint& g : r.egress_gateway) {
      gateway.push_back({{"base_url_env", g.base_url_env},
                         {"key_env", g.key_env},
                         {"upstream", g.upstream},
                         {"header", g.header},
                         {"prefix", g.prefix},
                         {"secret", g.secret}});
    }
    j["egress_gateway"] = std::move(gateway);
  }
  return j.dump() + "\n";
}

Result<AdoptionRecord> AdoptionRecordFromJson(const std::string& text) {
  AdoptionRecord r;
  try {
    const json j = json::parse(text);
    r.format = j.at("format").get<uint32_t>();
    if (r.format != kAdoptionFormat) {
      return PlainError("the adoption record has format " + std::to_string(r.format) +
                        ", this supervisor reads format " + std::to_string(kAdoptionFormat) +
                        " (a downgrade, or an upgrade that changed it)");
    }
    r.init_pid = j.at("init_pid").get<pid_t>();
    r.running_since_ms = j.at("running_since_ms").get<uint64_t>();
    r.pty = j.at("pty").get<bool>();
    r.policy_name = j.at("policy").get<std::string>();
    r.deadlines.wall_seconds = j.at("wall_seconds").get<uint64_t>();
    r.deadlines.idle_seconds = j.at("idle_seconds").get<uint64_t>();
    r.output.ring_bytes = j.at("ring_bytes").get<uint64_t>();
    r.output.transcript_max_bytes = j.at("transcript_max_bytes").get<uint64_t>();
    r.output.max_rate_bytes_per_second = j.at("max_rate_bytes_per_second").get<uint64_t>();
    r.output.max_rate_window_seconds = j.at("max_rate_window_seconds").get<uint64_t>();
    const std::string flood = j.at("on_flood").get<std::string>();
    if (flood == common::ToString(common::FloodAction::kKill)) {
      r.output.on_flood = common::FloodAction::kKill;
    } else if (flood == common::ToString(common::FloodAction::kThrottle)) {
      r.output.on_flood = common::FloodAction::kThrottle;
    } else {
      return PlainError("the adoption record's on_flood \"" + flood + "\" is unknown");
    }
    if (j.contains("egress_allow")) {
      r.egress_allow = j.at("egress_allow").get<std::vector<std::string>>();
    }
    if (j.contains("egress_gateway")) {
      for (const json& g : j.at("egress_gateway")) {
        r.egress_gateway.push_back(
            {g.at("base_url_env").get<std::string>(), g.at("key_env").get<std::string>(),
             g.at("upstream").get<std::string>(), g.at("header").get<std::string>(),
             g.at("prefix").get<std::string>(), g.at("secret").get<std::string>()});
      }
    }
  } catch (const json::exception& e) {
    return PlainError(std::string("the adoption record is unreadable: ") + e.what());
  }
  if (r.init_pid <= 0) return PlainError("the adoption record's init_pid is not a pid");
  return r;
}

Result<void> WriteAdoptionRecord(const std::string& session_dir, const AdoptionRecord& record) {
  return WriteFileAtomic(AdoptionRecordPath(session_dir), AdoptionRecordToJson(record));
}

Result<AdoptionRecord> ReadAdoptionRecord(const std::string& session_dir) {
  const std::string path = AdoptionRecordPath(session_dir);
  std::ifstream f(path);
  if (!f) {
    return ErrnoError("open(\"" + path +
                      "\") (no adoption record: written by a supervisor without re-adoption)");
  }
  std::stringstream text;
  text << f.rdbuf();
  auto r = AdoptionRecordFromJson(text.str());
  if (!r) return std::move(r).error().Wrap(path);
  return r;
}

std::map<std::string, StoredFds> GroupStoredFds(const std::vector<sd::ListenedFd>& listened,
                                                std::vector<sd::ListenedFd>* foreign) {
  std::map<std::string, StoredFds> out;
  for (const auto& f : listened) {
    auto parsed = sd::ParseFdName(f.name);
    if (!parsed) {
      foreign->push_back(f);
      continue;
    }
    StoredFds& s = out[parsed->session_id];
    if (s.fds.contains(parsed->kind)) {
      // Stored twice under one name: the first copy is the session's. Releasing the name would
      // drop that one from the store too, so this copy is only closed.
      ::close(f.fd);
      continue;
    }
    s.fds.emplace(parsed->kind, UniqueFd(f.fd));
    s.names.push_back(f.name);
  }
  return out;
}

Result<pid_t> PidOfPidfd(int fd) {
  const std::string path = "/proc/self/fdinfo/" + std::to_string(fd);
  std::ifstream f(path);
  if (!f) return ErrnoError("open(\"" + path + "\")");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("Pid:", 0) == 0) return static_cast<pid_t>(std::stol(line.substr(4)));
  }
  return PlainError("fd " + std::to_string(fd) + " is not a pidfd (no Pid: in " + path + ")");
}

Result<sandbox::SpawnedChild> AdoptChild(const sandbox::CgroupRoot& root, const std::string& id,
                                         const AdoptionRecord& record, StoredFds& stored) {
  using K = sd::FdKind;
  // Copies, not the stored fds themselves: a refusal at any step below (or the caller's, after
  // it) leaves every fd in `stored`, where SalvageOutput reads what they hold.
  auto take = [&](K kind) {
    auto it = stored.fds.find(kind);
    if (it == stored.fds.end()) return UniqueFd();
    return UniqueFd(::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 3));
  };
  auto leaf = sandbox::CgroupLeaf::OpenExisting(root, id);
  if (!leaf) return std::move(leaf).error().Wrap("the session's leaf is gone");
  sandbox::SpawnedChild c{sandbox::PidFd(), std::move(*leaf), UniqueFd(), UniqueFd(),
                          UniqueFd(),       UniqueFd(),       UniqueFd(), {}};
  c.report = take(K::kStatus);
  if (!c.report) return PlainError("no status socket in the fd store (init's exit report)");
  if (record.pty) {
    c.pty_master = take(K::kPty);
    if (!c.pty_master) return PlainError("no PTY master in the fd store");
  } else {
    c.stdout_read = take(K::kOut);
    c.stderr_read = take(K::kErr);
    if (!c.stdout_read || !c.stderr_read) {
      return PlainError("no stdout or stderr pipe in the fd store");
    }
    c.stdin_write = take(K::kIn);  // missing: stdin was closed
  }
  if (UniqueFd pidfd = take(K::kPidfd)) {
    MP_TRY(const pid_t pid, PidOfPidfd(pidfd.get()));
    // -1: init has exited and been reaped (by whoever inherited it); its exit report waits.
    if (pid != record.init_pid && pid != -1) {
      return PlainError("the stored pidfd refers to pid " + std::to_string(pid) +
                        ", the record's init is pid " + std::to_string(record.init_pid));
    }
    c.init = sandbox::PidFd(record.init_pid, std::move(pidfd));
  } else {
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, record.init_pid, 0));
    if (fd < 0) {
      return ErrnoError("no pidfd in the fd store, and pidfd_open(pid " +
                        std::to_string(record.init_pid) + ")");
    }
    UniqueFd opened(fd);
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    // The pid may have been reused since: it must still be in the session's leaf.
    if (!LeafHolds(c.leaf, record.init_pid)) {
      return PlainError("no pidfd in the fd store, and pid " + std::to_string(record.init_pid) +
                        " is not in the session's leaf any more");
    }
    c.init = sandbox::PidFd(record.init_pid, std::move(opened));
  }
  return c;
}

}  // namespace mp::supervisor

#include "supervisor/session_ids.h"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>

#include <fstream>
#include <sstream>

#include "common/kv_config.h"

namespace mp::supervisor {
namespace {

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// "name:start:count" lines overlapping `range`, as error sentences.
void SubordinateOverlaps(const IdRange& range, const std::string& text, const char* file,
                         std::vector<std::string>* out) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const auto start = common::ParseKvNumber(line.substr(a + 1, b - a - 1));
    const auto count = common::ParseKvNumber(line.substr(b + 1));
    if (!start || !count || *count == 0) continue;
    const uint64_t end = *start + *count - 1;
    if (*start <= range.last() && end >= range.first) {
      out->push_back(std::string(file) + " gives " + line.substr(0, a) + " " +
                     std::to_string(*start) + "-" + std::to_string(end));
    }
  }
}

}  // namespace

std::string IdRange::Text() const { return std::to_string(first) + "-" + std::to_string(last()); }

Result<IdRange> ParseIdRange(std::string_view text) {
  const size_t dash = text.find('-');
  const auto bad = [] {
    return PlainError("expected FIRST-LAST (decimal uids, e.g. 1879048192-1879113727) or off");
  };
  if (dash == std::string_view::npos) return bad();
  const auto first = common::ParseKvNumber(text.substr(0, dash));
  const auto last = common::ParseKvNumber(text.substr(dash + 1));
  if (!first || !last || *first > *last || *last > 0xFFFFFFFEull) return bad();
  if (*first < 1000) return PlainError("ids below 1000 belong to the system's own users");
  IdRange r{static_cast<uint32_t>(*first), static_cast<uint32_t>(*last - *first + 1)};
  if (r.Contains(65534) || r.Contains(65535)) {
    return PlainError("the range holds 65534 or 65535 (nobody, the overflow ids)");
  }
  return r;
}

IdDatabases ReadSystemIdDatabases() {
  IdDatabases db;
  ::setpwent();
  while (const passwd* p = ::getpwent()) db.users.emplace_back(p->pw_name, p->pw_uid);
  ::endpwent();
  ::setgrent();
  while (const group* g = ::getgrent()) db.groups.emplace_back(g->gr_name, g->gr_gid);
  ::endgrent();
  db.subuid_text = ReadWholeFile("/etc/subuid");
  db.subgid_text = ReadWholeFile("/etc/subgid");
  return db;
}

Result<void> CheckIdRange(const IdRange& range, const IdDatabases& db, uint64_t max_sessions) {
  std::vector<std::string> overlaps;
  for (const auto& [name, uid] : db.users) {
    if (range.Contains(uid)) overlaps.push_back("user " + name + " has uid " + std::to_string(uid));
  }
  for (const auto& [name, gid] : db.groups) {
    if (range.Contains(gid)) {
      overlaps.push_back("group " + name + " has gid " + std::to_string(gid));
    }
  }
  SubordinateOverlaps(range, db.subuid_text, "/etc/subuid", &overlaps);
  SubordinateOverlaps(range, db.subgid_text, "/etc/subgid", &overlaps);
  if (!overlaps.empty()) {
    std::string what = "session_uid_range " + range.Text() + " overlaps ids in use: ";
    for (size_t i = 0; i < overlaps.size() && i < 8; ++i) {
      what += (i > 0 ? "; " : "") + overlaps[i];
    }
    if (overlaps.size() > 8) what += "; and " + std::to_string(overlaps.size() - 8) + " more";
    return PlainError(what +
                      ". Choose a range no user, group or subordinate range uses "
                      "(docs/deploy.md, \"Per-session uids\")");
  }
  if (range.count < max_sessions) {
    return PlainError("session_uid_range " + range.Text() + " holds " +
                      std::to_string(range.count) + " ids, fewer than max_sessions (" +
                      std::to_string(max_sessions) + "): widen it or lower max_sessions");
  }
  return Ok();
}

SessionIdPool::SessionIdPool(IdRange range, std::function<bool(const std::string&)> leaf_exists)
    : range_(range), leaf_exists_(std::move(leaf_exists)) {}

void SessionIdPool::Seed(uint32_t id, const std::string& leaf) {
  if (range_.Contains(id)) held_.emplace(id, leaf);
}

void SessionIdPool::FreeGone() {
  for (auto it = held_.begin(); it != held_.end();) {
    it = leaf_exists_(it->second) ? std::next(it) : held_.erase(it);
  }
}

Result<uint32_t> SessionIdPool::Acquire(const std::string& leaf) {
  FreeGone();
  uint64_t id = range_.first;
  for (const auto& [held, name] : held_) {  // ascending: the first gap is the lowest free id
    if (held != id) break;
    ++id;
  }
  if (!range_.Contains(id)) {
    return PlainError("every id of session_uid_range " + range_.Text() +
                      " is held by a session whose cgroup leaf still exists; widen the range "
                      "or wait for sessions to end");
  }
  held_.emplace(static_cast<uint32_t>(id), leaf);
  return static_cast<uint32_t>(id);
}

std::vector<std::pair<uint32_t, std::string>> UidsOfLeaves(const std::string& sessions_dir) {
  std::vector<std::pair<uint32_t, std::string>> out;
  DIR* d = ::opendir(sessions_dir.c_str());
  if (d == nullptr) return out;
  std::vector<std::string> leaves;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_type == DT_DIR && e->d_name[0] != '.') leaves.emplace_back(e->d_name);
  }
  ::closedir(d);
  for (const auto& leaf : leaves) {
    std::ifstream procs(sessions_dir + "/" + leaf + "/cgroup.procs");
    pid_t pid;
    while (procs >> pid) {
      std::ifstream status("/proc/" + std::to_string(pid) + "/status");
      std::string line;
      while (std::getline(status, line)) {
        if (line.rfind("Uid:", 0) != 0) continue;
        std::istringstream fields(line.substr(4));
        uint64_t real = 0;
        if (fields >> real) out.emplace_back(static_cast<uint32_t>(real), leaf);
        break;
      }
    }
  }
  return out;
}

}  // namespace mp::supervisor

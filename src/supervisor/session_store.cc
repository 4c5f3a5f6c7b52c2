#include "supervisor/session_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/unique_fd.h"

namespace mp::supervisor {

Result<void> WriteFileAtomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return ErrnoError("open(\"" + tmp + "\")");
  auto written = [&]() -> Result<void> {
    // A full file system shows first as a short write, then as ENOSPC on the next one.
    for (size_t done = 0; done < text.size();) {
      const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ErrnoError(n == 0 ? ENOSPC : errno, "write(\"" + tmp + "\")");
      done += static_cast<size_t>(n);
    }
    if (::fdatasync(fd.get()) != 0) return ErrnoError("fdatasync(\"" + tmp + "\")");
    MP_RETURN_IF_ERROR(fd.Close());
    if (::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("rename(\"" + path + "\")");
    return Ok();
  }();
  if (!written) ::unlink(tmp.c_str());  // no half-written file left behind
  return written;
}

uint64_t WallClockMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::vector<std::string> RetentionVictims(const std::vector<RetentionEntry>& entries,
                                          const RetentionLimits& limits) {
  size_t ended = 0;
  uint64_t bytes = 0;
  for (const auto& e : entries) {
    if (!e.ended) continue;
    ++ended;
    bytes += e.held_output_bytes;
  }
  std::vector<std::string> victims;
  for (const auto& e : entries) {
    if (ended <= limits.max_ended_records && bytes <= limits.max_ended_output_bytes) break;
    if (!e.ended) continue;
    victims.push_back(e.id);
    --ended;
    bytes -= std::min(bytes, e.held_output_bytes);
  }
  return victims;
}

std::chrono::milliseconds ExpiryDelay(uint64_t ended_at_ms, std::chrono::milliseconds ttl,
                                      uint64_t now_ms) {
  const uint64_t due = ended_at_ms + static_cast<uint64_t>(ttl.count());
  return std::chrono::milliseconds(due > now_ms ? due - now_ms : 0);
}

std::string SessionStore::SessionDir(const std::string& id) const {
  return state_dir_ + "/sessions/" + id;
}

Result<void> SessionStore::CreateSessionDir(const std::string& id) const {
  const std::string dir = SessionDir(id);
  if (::mkdir(dir.c_str(), 0700) != 0) return ErrnoError("mkdir(\"" + dir + "\")");
  return Ok();
}

Result<void> SessionStore::TryWrite(const wire::SessionInfo& info) const {
  return WriteFileAtomic(SessionDir(info.id) + "/record.json", wire::SessionInfoToJson(info));
}

void SessionStore::Write(const wire::SessionInfo& info) const {
  auto r = TryWrite(info);
  if (!r) {
    std::fprintf(stderr, "monkeyproofd: session %s: record: %s\n", info.id.c_str(),
                 r.error().ToString().c_str());
  }
}

void SessionStore::Remove(const std::string& id, OutputLog* log) const {
  if (log != nullptr) (void)log->RemoveFiles();
  const std::string dir = SessionDir(id);
  ::unlink((dir + "/record.json").c_str());
  ::unlink((dir + "/adopt.json").c_str());
  ::rmdir(dir.c_str());
}

void SessionStore::EndAsRestart(wire::SessionInfo& info, std::string detail) {
  wire::EndRecord end;
  end.reason = wire::EndReason::kSupervisorRestart;
  end.ended_at_ms = WallClockMs();
  end.detail = std::move(detail);
  info.end = end;
  info.state = wire::SessionState::kKilled;
  info.pid.reset();
}

Result<std::vector<SessionStore::Recovered>> SessionStore::Recover(
    const std::set<std::string>& to_adopt) const {
  const std::string sessions_dir = state_dir_ + "/sessions";
  if (::mkdir(sessions_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError("mkdir(\"" + sessions_dir + "\")");
  }
  std::vector<Recovered> loaded;
  DIR* d = ::opendir(sessions_dir.c_str());
  if (d == nullptr) return ErrnoError("opendir(\"" + sessions_dir + "\")");
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
    Recovered r;
    r.info = std::move(*info);
    if (!r.info.end && !to_adopt.contains(id)) {
      EndAsRestart(r.info, "the supervisor restarted while the session ran");
    }
    if (auto log = OutputLog::Open(SessionDir(id) + "/output", {})) r.log = std::move(*log);
    if (r.log) r.info.output_bytes = std::max(r.info.output_bytes, r.log->total());
    loaded.push_back(std::move(r));
  }
  ::closedir(d);
  std::sort(loaded.begin(), loaded.end(), [](const Recovered& a, const Recovered& b) {
    return a.info.created_at_ms < b.info.created_at_ms;
  });
  for (const auto& r : loaded) {
    if (r.info.end) Write(r.info);
  }
  return loaded;
}

}  // namespace mp::supervisor

#include "supervisor/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "common/log.h"

namespace mp::supervisor {

std::string JsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c >= 0x80) {
          // Non-ASCII is escaped byte by byte: the log stays valid JSON whatever the input.
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

Result<UniqueFd> AuditLog::OpenPath(const std::string& path) {
  UniqueFd fd;
  if (path.empty()) {
    fd.Reset(::fcntl(2, F_DUPFD_CLOEXEC, 3));
  } else {
    fd.Reset(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  }
  if (!fd) return ErrnoError("open(audit log \"" + (path.empty() ? "stderr" : path) + "\")");
  return fd;
}

Result<AuditLog> AuditLog::Open(const std::string& path) {
  AuditLog log;
  MP_TRY(log.fd_, OpenPath(path));
  log.path_ = path;
  return log;
}

Result<void> AuditLog::Reopen() {
  if (path_.empty()) return Ok();
  MP_TRY(auto fd, OpenPath(path_));
  fd_ = std::move(fd);
  return Ok();
}

namespace {

std::string Quoted(std::string_view s) { return "\"" + JsonEscape(s) + "\""; }
std::string QuotedOrNull(std::string_view s) { return s.empty() ? "null" : Quoted(s); }

}  // namespace

std::string AuditLog::Format(const AuditEntry& e, int64_t unix_ms) {
  const std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char when[96];
  std::snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_ms % 1000));
  std::string line =
      "{\"time\":\"" + std::string(when) + "\",\"action\":" + Quoted(e.action) +
      ",\"session\":" + Quoted(e.session) + ",\"principal\":" + QuotedOrNull(e.principal) +
      ",\"peer_pid\":" + std::to_string(e.peer_pid) +
      ",\"peer_uid\":" + std::to_string(e.peer_uid) + ",\"client\":" + Quoted(e.client) +
      ",\"via\":" + QuotedOrNull(e.via) + ",\"outcome\":" + Quoted(e.outcome);
  for (const AuditField& f : e.fields) {
    line += ",\"" + JsonEscape(f.name) + "\":";
    switch (f.kind) {
      case AuditField::Kind::kString:
        line += Quoted(f.text);
        break;
      case AuditField::Kind::kNumber:
        line += std::to_string(f.number);
        break;
      case AuditField::Kind::kBool:
        line += f.flag ? "true" : "false";
        break;
      case AuditField::Kind::kStrings: {
        line += '[';
        bool first = true;
        for (const std::string& item : *f.list) {
          if (!first) line += ',';
          first = false;
          line += Quoted(item);
        }
        line += ']';
        break;
      }
    }
  }
  line += '}';
  return line;
}

void AuditLog::Write(const AuditEntry& e) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::string line = Format(e, ms) + "\n";
  // One write per line with O_APPEND keeps lines whole.
  const ssize_t n = ::write(fd_.get(), line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    line.pop_back();  // the newline
    common::Log(common::LogLevel::kError, "component=audit_log event=write_failed line=" + line,
                n < 0 ? errno : 0);
  }
}

}  // namespace mp::supervisor

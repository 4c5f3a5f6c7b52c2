#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace mp::common {
namespace {

std::atomic<const char*> g_program{"monkeyproofd"};

}  // namespace

std::string_view ToString(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "error";
}

void SetLogProgram(const char* program) { g_program.store(program, std::memory_order_relaxed); }

std::string FormatLogLine(std::string_view program, LogLevel level, std::string_view message,
                          int errnum) {
  std::string line;
  line.reserve(program.size() + message.size() + 64);
  line.append(program).append(": level=").append(ToString(level)).append(" ").append(message);
  if (errnum != 0) {
    const char* name = strerrorname_np(errnum);
    const char* description = strerrordesc_np(errnum);
    line.append(": ").append(name != nullptr ? name : "errno " + std::to_string(errnum));
    line.append(" (").append(description != nullptr ? description : "unknown error").append(")");
  }
  // One line per record: a message carrying a newline would forge a second record.
  for (char& c : line) {
    if (c == '\n') c = ' ';
  }
  line += '\n';
  return line;
}

void Log(LogLevel level, std::string_view message, int errnum) {
  const int saved = errno;
  const std::string line =
      FormatLogLine(g_program.load(std::memory_order_relaxed), level, message, errnum);
  // One write per line; a short write to a pipe or the journal's socket is not retried in
  // pieces (the rest would interleave with another thread's line), and failures are ignored:
  // there is nowhere else to report them.
  ssize_t n;
  do {
    n = ::write(STDERR_FILENO, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  errno = saved;
}

}  // namespace mp::common

#include "cli/terminal.h"

#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>

namespace mp::cli {
namespace {

// The saved settings live in plain globals so that RestoreTerminal stays async-signal-safe.
struct termios g_saved {};
int g_saved_fd = -1;
volatile sig_atomic_t g_raw_active = 0;

void RestoreAtExit() { RestoreTerminal(); }

}  // namespace

Result<std::unique_ptr<RawTerminal>> RawTerminal::Enter(int fd) {
  if (g_raw_active != 0) return PlainError("the terminal is already in raw mode");
  struct termios saved {};
  if (::tcgetattr(fd, &saved) != 0) return ErrnoError("tcgetattr(stdin)");
  struct termios raw = saved;
  ::cfmakeraw(&raw);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  g_saved = saved;
  g_saved_fd = fd;
  static const bool registered = std::atexit(RestoreAtExit) == 0;
  (void)registered;
  g_raw_active = 1;
  if (::tcsetattr(fd, TCSADRAIN, &raw) != 0) {
    g_raw_active = 0;
    return ErrnoError("tcsetattr(stdin, raw)");
  }
  return std::unique_ptr<RawTerminal>(new RawTerminal());
}

RawTerminal::~RawTerminal() { RestoreTerminal(); }

void RestoreTerminal() {
  if (g_raw_active == 0) return;
  g_raw_active = 0;
  // EINTR: a signal may land while the line discipline drains output; try again.
  while (::tcsetattr(g_saved_fd, TCSADRAIN, &g_saved) != 0 && errno == EINTR) {
  }
}

bool IsTerminal(int fd) { return ::isatty(fd) == 1; }

std::optional<std::pair<int, int>> WindowSize(int fd) {
  struct winsize ws {};
  if (::ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0 || ws.ws_col == 0) return std::nullopt;
  return std::make_pair(static_cast<int>(ws.ws_row), static_cast<int>(ws.ws_col));
}

size_t StdoutWidth() {
  if (!IsTerminal(STDOUT_FILENO)) return 0;
  const std::optional<std::pair<int, int>> size = WindowSize(STDOUT_FILENO);
  return size ? static_cast<size_t>(size->second) : 0;
}

Result<void> WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(fd == STDOUT_FILENO ? "write(stdout)" : "write(stderr)");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

}  // namespace mp::cli

// The local terminal and standard streams of the `monkeyproof` client: raw mode for `attach`
// (restored on every way out: destructor, exit(), the signal handlers that call
// RestoreTerminal), the window size, the width tables are cut to, and full writes. Runs in the
// CLI only, on the main thread; RestoreTerminal is async-signal-safe.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "common/result.h"

namespace mp::cli {

// While an object lives, `fd` (a terminal) is in raw mode: no echo, no line editing, no
// signals from keys (Ctrl-C and Ctrl-Z reach the session as bytes), no output processing.
class RawTerminal {
 public:
  static Result<std::unique_ptr<RawTerminal>> Enter(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  RawTerminal() = default;
};

// Puts back the settings saved by RawTerminal::Enter, if any are still pending. Idempotent.
void RestoreTerminal();

bool IsTerminal(int fd);
// {rows, cols} of the terminal on `fd`; nullopt when it is not a terminal or reports 0x0.
std::optional<std::pair<int, int>> WindowSize(int fd);
// Columns of stdout when it is a terminal, else 0.
size_t StdoutWidth();

// write() until all of `data` is out (EINTR retried).
Result<void> WriteAll(int fd, std::string_view data);

}  // namespace mp::cli

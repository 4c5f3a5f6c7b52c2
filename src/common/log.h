// One format for the diagnostic lines of monkeyproofd and monkeyproof-api on stderr (the
// journal under systemd): "<program>: level=<level> <message>[: <ERRNAME> (<description>)]",
// e.g. "monkeyproofd: level=warn component=control_server event=peer_rejected uid=1000". Messages
// are best written as key=value words after a short phrase. SetLogProgram runs once at start,
// before threads; Log may then run on any thread: a line is one write(2) to fd 2, so lines of
// concurrent threads do not interleave. Not for the child between clone and exec (it allocates).
#pragma once

#include <string>
#include <string_view>

namespace mp::common {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

// "debug", "info", "warn", "error".
std::string_view ToString(LogLevel level);

// The prefix of every line, e.g. "monkeyproofd" (the default) or "monkeyproof-api". Kept as a
// pointer: pass a string literal.
void SetLogProgram(const char* program);

// The line Log writes, newline included; `errnum` 0 adds no errno suffix.
std::string FormatLogLine(std::string_view program, LogLevel level, std::string_view message,
                          int errnum = 0);

// Writes FormatLogLine(program, level, message, errnum) to stderr. errno is preserved.
void Log(LogLevel level, std::string_view message, int errnum = 0);

}  // namespace mp::common

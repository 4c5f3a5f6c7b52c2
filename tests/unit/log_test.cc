// The shared log line format (common/log.h): level names, the program prefix, the errno suffix,
// newlines folded, and Log writing one whole line to fd 2 (redirected to a file here) without
// touching errno. Runs as any user.
#include "common/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

namespace mp::common {
namespace {

TEST(LogTest, LineFormat) {
  EXPECT_EQ(FormatLogLine("monkeyproofd", LogLevel::kInfo, "component=x event=y n=3"),
            "monkeyproofd: level=info component=x event=y n=3\n");
  EXPECT_EQ(FormatLogLine("monkeyproof-api", LogLevel::kWarning, "subscribe s-1: gone"),
            "monkeyproof-api: level=warn subscribe s-1: gone\n");
  EXPECT_EQ(FormatLogLine("p", LogLevel::kError, "op=open path=/x", ENOENT),
            "p: level=error op=open path=/x: ENOENT (No such file or directory)\n");
  EXPECT_EQ(FormatLogLine("p", LogLevel::kDebug, "a"), "p: level=debug a\n");
  // A newline in a message cannot start a forged record.
  EXPECT_EQ(FormatLogLine("p", LogLevel::kInfo, "a\np: level=error forged"),
            "p: level=info a p: level=error forged\n");
}

TEST(LogTest, LogWritesOneLineToStderrAndKeepsErrno) {
  char path[] = "/tmp/mp-log-test-XXXXXX";
  const int file = ::mkstemp(path);
  ASSERT_GE(file, 0);
  const int saved_stderr = ::dup(STDERR_FILENO);
  ASSERT_GE(saved_stderr, 0);
  ASSERT_EQ(::dup2(file, STDERR_FILENO), STDERR_FILENO);
  SetLogProgram("log-test");
  errno = EAGAIN;
  Log(LogLevel::kError, "component=t event=failed", EACCES);
  const int errno_after = errno;
  Log(LogLevel::kInfo, "component=t event=done");
  SetLogProgram("monkeyproofd");
  ASSERT_EQ(::dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
  ::close(saved_stderr);

  EXPECT_EQ(errno_after, EAGAIN);
  std::string text(4096, '\0');
  const ssize_t n = ::pread(file, text.data(), text.size(), 0);
  ASSERT_GE(n, 0);
  text.resize(static_cast<size_t>(n));
  ::close(file);
  ::unlink(path);
  EXPECT_EQ(text,
            "log-test: level=error component=t event=failed: EACCES (Permission denied)\n"
            "log-test: level=info component=t event=done\n");
}

}  // namespace
}  // namespace mp::common

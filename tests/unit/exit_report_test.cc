// Init's exit report as the supervisor reads it (sandbox::ReadExitReport, CommandEnd): the
// record survives its writer, a record of another format is refused with a reason, and init's
// own status stands in only without a report. Over a SEQPACKET socketpair; runs as any user.
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "common/unique_fd.h"
#include "sandbox/child_plan.h"
#include "sandbox/spawn.h"

namespace mp::sandbox {
namespace {

struct Pair {
  UniqueFd supervisor, init;
};

Pair MakePair() {
  int sp[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
  return {UniqueFd(sp[0]), UniqueFd(sp[1])};
}

SpawnReport Exited(int wait_status, int64_t ms) {
  SpawnReport r;
  std::memset(&r, 0, sizeof r);
  r.kind = SpawnReport::kExited;
  r.status = wait_status;
  r.exited_ms = ms;
  return r;
}

TEST(ExitReportTest, TheRecordOutlivesItsWriter) {
  Pair p = MakePair();
  const SpawnReport r = Exited(42 << 8, 1765000000123);  // exit(42)
  ASSERT_EQ(::send(p.init.get(), &r, sizeof r, 0), static_cast<ssize_t>(sizeof r));
  p.init.Reset();  // init is gone: the queued record stays
  auto got = ReadExitReport(p.supervisor.get());
  ASSERT_TRUE(got) << got.error().ToString();
  ASSERT_TRUE(got->has_value());
  EXPECT_TRUE((*got)->status.exited);
  EXPECT_EQ((*got)->status.code, 42);
  EXPECT_EQ((*got)->exited_ms, 1765000000123);
  // Read once; then end of file: no report, no error.
  auto again = ReadExitReport(p.supervisor.get());
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_FALSE(again->has_value());
}

TEST(ExitReportTest, NoRecordYetIsNotAnError) {
  Pair p = MakePair();
  auto got = ReadExitReport(p.supervisor.get());
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_FALSE(got->has_value());
}

TEST(ExitReportTest, ASignalIsDecoded) {
  Pair p = MakePair();
  const SpawnReport r = Exited(SIGKILL, 5);  // a wait status for "killed by SIGKILL"
  ASSERT_EQ(::send(p.init.get(), &r, sizeof r, 0), static_cast<ssize_t>(sizeof r));
  auto got = ReadExitReport(p.supervisor.get());
  ASSERT_TRUE(got && got->has_value());
  EXPECT_FALSE((*got)->status.exited);
  EXPECT_EQ((*got)->status.signal, SIGKILL);
}

TEST(ExitReportTest, ARecordOfAnotherFormatIsRefusedNamingBothSizes) {
  for (size_t size : {sizeof(SpawnReport) - 8, sizeof(SpawnReport) + 8}) {
    Pair p = MakePair();
    char buf[sizeof(SpawnReport) + 8];
    std::memset(buf, 0, sizeof buf);
    const SpawnReport r = Exited(0, 1);
    std::memcpy(buf, &r, std::min(size, sizeof r));
    ASSERT_EQ(::send(p.init.get(), buf, size, 0), static_cast<ssize_t>(size));
    auto got = ReadExitReport(p.supervisor.get());
    ASSERT_FALSE(got) << "a record of " << size << " bytes was taken";
    EXPECT_NE(got.error().what.find(std::to_string(size) + " bytes, expected " +
                                    std::to_string(sizeof(SpawnReport))),
              std::string::npos)
        << got.error().ToString();
  }
}

TEST(ExitReportTest, AnotherKindIsRefused) {
  Pair p = MakePair();
  SpawnReport r = Exited(0, 1);
  r.kind = SpawnReport::kStarted;
  ASSERT_EQ(::send(p.init.get(), &r, sizeof r, 0), static_cast<ssize_t>(sizeof r));
  auto got = ReadExitReport(p.supervisor.get());
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().what.find("kind 2"), std::string::npos) << got.error().ToString();
}

TEST(ExitReportTest, InitsOwnStatusStandsInOnlyWithoutAReport) {
  const WaitStatus command{true, 42, 0, false};
  const WaitStatus init_exit{true, 0, 0, false};
  const WaitStatus init_killed{false, 0, SIGKILL, false};
  const Result<std::optional<ExitReport>> report{std::optional<ExitReport>(ExitReport{command, 7})};
  const Result<std::optional<ExitReport>> none{std::optional<ExitReport>{}};
  const Result<std::optional<ExitReport>> bad{PlainError("exit report of 3 bytes")};
  const Result<std::optional<WaitStatus>> init_ok{std::optional<WaitStatus>(init_exit)};
  const Result<std::optional<WaitStatus>> init_sigkill{std::optional<WaitStatus>(init_killed)};
  // Not init's parent (a restarted supervisor): waitid fails with ECHILD.
  const Result<std::optional<WaitStatus>> not_parent{ErrnoError(ECHILD, "waitid(P_PIDFD)")};

  auto end = CommandEnd(report, init_ok);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->code, 42) << "init's exit 0 hid the command's status";
  end = CommandEnd(report, not_parent);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->code, 42);
  end = CommandEnd(none, init_sigkill);  // init died before it reported (an OOM kill)
  ASSERT_TRUE(end);
  EXPECT_FALSE(end->exited);
  EXPECT_EQ(end->signal, SIGKILL);
  end = CommandEnd(bad, init_sigkill);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->signal, SIGKILL);
  EXPECT_FALSE(CommandEnd(none, not_parent).has_value());
}

}  // namespace
}  // namespace mp::sandbox

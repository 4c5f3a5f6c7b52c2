#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include <gtest/gtest.h>

#include "common/limits.h"
#include "common/names.h"
#include "common/result.h"
#include "common/scope_guard.h"
#include "common/unique_fd.h"

namespace mp {
namespace {

bool FdIsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

Result<int> ParsePositive(int v) {
  if (v <= 0) return PlainError("value " + std::to_string(v) + " is not positive");
  return v;
}

Result<int> DoubledPositive(int v) {
  MP_TRY(int x, ParsePositive(v));
  return x * 2;
}

Result<void> CheckPositive(int v) {
  MP_RETURN_IF_ERROR(ParsePositive(v));
  return Ok();
}

TEST(ResultTest, HoldsValue) {
  Result<int> r = 41;
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r + 1, 42);
}

TEST(ResultTest, HoldsErrorWithErrnoName) {
  Result<int> r = ErrnoError(ENOENT, "open /nope");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum, ENOENT);
  EXPECT_EQ(r.error().ToString(), "open /nope: ENOENT (No such file or directory)");
}

TEST(ResultTest, PlainErrorHasNoErrnoSuffix) {
  EXPECT_EQ(PlainError("bad field").ToString(), "bad field");
}

TEST(ResultTest, WrapKeepsErrnoAndCode) {
  const Error inner = CodedError(ErrorCode::kPolicyViolation, "cwd \"/etc\"", EACCES);
  const Error copy = inner.Wrap("policy \"t\"");  // const& overload
  EXPECT_EQ(copy.code, ErrorCode::kPolicyViolation);
  EXPECT_EQ(copy.errnum, EACCES);
  EXPECT_EQ(copy.what, "policy \"t\": cwd \"/etc\"");
  const Error moved = CodedError(ErrorCode::kBadRequest, "task: is empty").Wrap("spawn");
  EXPECT_EQ(moved.code, ErrorCode::kBadRequest);
  EXPECT_EQ(moved.what, "spawn: task: is empty");
  // Syscall and plain errors are the host's: internal.
  EXPECT_EQ(ErrnoError(ENOENT, "open(x)").code, ErrorCode::kInternal);
  EXPECT_EQ(PlainError("x").Wrap("y").code, ErrorCode::kInternal);
  EXPECT_EQ(ToString(ErrorCode::kPolicyViolation), "policy_violation");
  EXPECT_EQ(ToString(ErrorCode::kUnavailable), "unavailable");
  EXPECT_EQ(ToString(ErrorCode::kTooLarge), "too_large");
  EXPECT_EQ(ToString(ErrorCode::kHostSetup), "host_setup");
}

TEST(ResultTest, WrapAddsOutermostContextFirst) {
  Error e = ErrnoError(EACCES, "openat(cgroup \"s-1\", \"memory.max\")")
                .Wrap("set limits")
                .Wrap("spawn s-1");
  EXPECT_EQ(e.what, "spawn s-1: set limits: openat(cgroup \"s-1\", \"memory.max\")");
  EXPECT_EQ(e.errnum, EACCES);
}

TEST(ResultTest, TryPropagatesErrorAndValue) {
  EXPECT_EQ(*DoubledPositive(4), 8);
  auto r = DoubledPositive(-1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().what, "value -1 is not positive");
  EXPECT_TRUE(CheckPositive(3));
  EXPECT_FALSE(CheckPositive(0));
}

TEST(ResultTest, MovesOutMoveOnlyValue) {
  auto make = []() -> Result<UniqueFd> {
    return UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  };
  Result<UniqueFd> r = make();
  ASSERT_TRUE(r);
  UniqueFd fd = std::move(r).value();
  EXPECT_TRUE(fd.valid());
}

TEST(UniqueFdTest, ClosesOnDestruction) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd fd(raw);
    EXPECT_TRUE(FdIsOpen(raw));
  }
  EXPECT_FALSE(FdIsOpen(raw));
}

TEST(UniqueFdTest, ReleaseGivesUpOwnership) {
  int raw;
  {
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    raw = fd.Release();
    EXPECT_FALSE(fd.valid());
  }
  EXPECT_TRUE(FdIsOpen(raw));
  ::close(raw);
}

TEST(UniqueFdTest, MoveTransfersAndResetClosesOld) {
  UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int raw_a = a.get();
  UniqueFd b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_EQ(b.get(), raw_a);
  UniqueFd c(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int raw_c = c.get();
  c = std::move(b);
  EXPECT_FALSE(FdIsOpen(raw_c) && raw_c != raw_a);
  EXPECT_EQ(c.get(), raw_a);
}

TEST(UniqueFdTest, CloseReportsBadDescriptor) {
  UniqueFd fd(1000);  // not open
  auto r = fd.Close();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum, EBADF);
  EXPECT_FALSE(fd.valid());
  EXPECT_TRUE(fd.Close());  // second close is a no-op
}

TEST(UniqueFdTest, MakePipeIsCloexecAndConnected) {
  auto p = MakePipe();
  ASSERT_TRUE(p) << p.error().ToString();
  auto& [r, w] = *p;
  EXPECT_TRUE(::fcntl(r.get(), F_GETFD) & FD_CLOEXEC);
  EXPECT_TRUE(::fcntl(w.get(), F_GETFD) & FD_CLOEXEC);
  ASSERT_EQ(::write(w.get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(r.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

TEST(ScopeGuardTest, RunsUnlessDismissed) {
  int runs = 0;
  {
    ScopeGuard g([&] { ++runs; });
  }
  EXPECT_EQ(runs, 1);
  {
    ScopeGuard g([&] { ++runs; });
    g.Dismiss();
  }
  EXPECT_EQ(runs, 1);
}

}  // namespace

// The name rules of common/names.h at their boundaries (policy loader, wire and API use them).
TEST(NamesTest, PresetNameBoundaries) {
  EXPECT_TRUE(common::IsPresetName("a"));
  EXPECT_TRUE(common::IsPresetName("0-claude-print"));
  EXPECT_TRUE(common::IsPresetName(std::string(64, 'x')));
  EXPECT_FALSE(common::IsPresetName(std::string(65, 'x')));
  EXPECT_FALSE(common::IsPresetName(""));
  EXPECT_FALSE(common::IsPresetName("-a"));
  EXPECT_FALSE(common::IsPresetName("Exec"));
  EXPECT_FALSE(common::IsPresetName("a_b"));
}

TEST(NamesTest, EnvNameBoundaries) {
  EXPECT_TRUE(common::IsEnvName("_"));
  EXPECT_TRUE(common::IsEnvName("PATH_2"));
  EXPECT_TRUE(common::IsEnvName(std::string(256, 'A')));
  EXPECT_FALSE(common::IsEnvName(std::string(257, 'A')));
  EXPECT_FALSE(common::IsEnvName(""));
  EXPECT_FALSE(common::IsEnvName("2X"));
  EXPECT_FALSE(common::IsEnvName("A-B"));
  EXPECT_FALSE(common::IsEnvName("A=B"));
}

TEST(NamesTest, SessionIdBoundaries) {
  EXPECT_TRUE(common::IsValidSessionId("s-1"));
  EXPECT_TRUE(common::IsValidSessionId("s-" + std::string(40, 'Z')));
  EXPECT_FALSE(common::IsValidSessionId("s-" + std::string(41, 'Z')));
  EXPECT_FALSE(common::IsValidSessionId("s-"));
  EXPECT_FALSE(common::IsValidSessionId("S-1"));
  EXPECT_FALSE(common::IsValidSessionId("s-a_b"));
}

// The ranges of common/limits.h are the documented ones (docs/policies.md).
TEST(LimitsTest, RangesAreTheDocumentedOnes) {
  EXPECT_EQ(common::kMemoryMaxBytesRange.min, 16u << 20);
  EXPECT_EQ(common::kMemoryMaxBytesRange.max, uint64_t{1} << 60);
  EXPECT_EQ(common::kPidsMaxRange.min, 8u);
  EXPECT_EQ(common::kPidsMaxRange.max, 4194304u);
  EXPECT_EQ(common::kCpuMaxPercentRange.min, 1u);
  EXPECT_EQ(common::kCpuMaxPercentRange.max, 100000u);
  EXPECT_EQ(common::kDeadlineSecondsRange.min, 0u);
  EXPECT_EQ(common::kDeadlineSecondsRange.max, 2592000u);
}

}  // namespace mp

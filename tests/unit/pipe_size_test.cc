// ResizePipe, which StartSpawn applies to a session's stdout and stderr pipes: the pipe then
// holds what was asked for; above /proc/sys/fs/pipe-max-size an unprivileged process gets
// that maximum instead of an error; a descriptor that is no pipe fails, naming the call.
// Runs as any user (as root too: the expectations follow CAP_SYS_RESOURCE).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>

#include "common/unique_fd.h"
#include "sandbox/spawn.h"

namespace mp::sandbox {
namespace {

size_t PipeMax() {
  std::ifstream f("/proc/sys/fs/pipe-max-size");
  size_t v = 0;
  f >> v;
  return v;
}

bool HasCapSysResource() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  return (data[CAP_SYS_RESOURCE / 32].effective & (1U << (CAP_SYS_RESOURCE % 32))) != 0;
}

TEST(PipeSizeTest, TheDefaultOutputPipeHoldsOneMebibyte) {
  auto p = MakePipe();
  ASSERT_TRUE(p.has_value()) << p.error().ToString();
  ASSERT_EQ(::fcntl(p->first.get(), F_GETPIPE_SZ), 65536);  // the kernel's default
  const size_t max = PipeMax();
  ASSERT_GT(max, 0u);
  auto got = ResizePipe(p->first.get(), kDefaultOutputPipeBytes);
  ASSERT_TRUE(got.has_value()) << got.error().ToString();
  const size_t expected =
      HasCapSysResource() ? kDefaultOutputPipeBytes : std::min(kDefaultOutputPipeBytes, max);
  EXPECT_EQ(*got, expected);
  EXPECT_EQ(static_cast<size_t>(::fcntl(p->second.get(), F_GETPIPE_SZ)), expected);
  // A writer can now put that much into the pipe without blocking.
  ASSERT_EQ(::fcntl(p->second.get(), F_SETFL, O_NONBLOCK), 0);
  std::string block(expected, 'x');
  EXPECT_EQ(::write(p->second.get(), block.data(), block.size()),
            static_cast<ssize_t>(block.size()));
}

TEST(PipeSizeTest, AboveTheSystemMaximumTheMaximumWithoutPrivilege) {
  const size_t max = PipeMax();
  ASSERT_GT(max, 0u);
  auto p = MakePipe();
  ASSERT_TRUE(p.has_value()) << p.error().ToString();
  auto got = ResizePipe(p->first.get(), max * 2);
  ASSERT_TRUE(got.has_value()) << got.error().ToString();
  EXPECT_EQ(*got, HasCapSysResource() ? max * 2 : max);
  // Control: the plain call above the maximum is refused without privilege, which is why
  // ResizePipe lowers the request.
  if (!HasCapSysResource()) {
    errno = 0;
    EXPECT_EQ(::fcntl(p->first.get(), F_SETPIPE_SZ, static_cast<int>(max * 2)), -1);
    EXPECT_EQ(errno, EPERM);
  }
}

TEST(PipeSizeTest, NotAPipeFailsNamingTheCall) {
  UniqueFd file(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(file.valid());
  auto got = ResizePipe(file.get(), kDefaultOutputPipeBytes);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().errnum, EBADF);
  EXPECT_EQ(got.error().what, "fcntl(F_SETPIPE_SZ, 1048576)");
}

}  // namespace
}  // namespace mp::sandbox

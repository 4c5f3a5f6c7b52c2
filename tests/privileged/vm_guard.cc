// main() for privileged test binaries: refuses to run anywhere but the test VM.
#include "vm_guard.h"

#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <gtest/gtest.h>

namespace mp::testing {

bool InTestVm() {
  const char* flag = std::getenv("MP_TEST_VM");
  if (flag == nullptr || std::strcmp(flag, "1") != 0) return false;
  if (::access("/run/mp-test-vm", F_OK) != 0) return false;
  struct statfs st {};
  if (::statfs("/sys/fs/cgroup", &st) != 0 || st.f_type != CGROUP2_SUPER_MAGIC) return false;
  return ::geteuid() == 0;
}

}  // namespace mp::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (!mp::testing::InTestVm()) {
    // Not a skip: a privileged test that cannot run has not passed.
    std::fprintf(stderr,
                 "FAILED: %s is a privileged test; it runs only as root inside the test VM.\n"
                 "Run it with: ctest -L privileged  (boots tests/vm/run-in-vm.sh)\n",
                 argv[0]);
    return 1;
  }
  return RUN_ALL_TESTS();
}

// main() for unit test binaries: a skipped test fails the run. The unit tier runs on any
// Linux host, so a test that cannot run here has not passed; a test that needs a kernel
// feature asserts it and names it instead of skipping (tests/unit/seccomp_test.cc). The
// privileged tier applies the same rule in the VM (tests/vm/guest-suite.sh).
#include <gtest/gtest.h>

#include <cstdio>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
  if (unit.skipped_test_count() == 0) return rc;
  for (int s = 0; s < unit.total_test_suite_count(); ++s) {
    const ::testing::TestSuite& suite = *unit.GetTestSuite(s);
    for (int t = 0; t < suite.total_test_count(); ++t) {
      const ::testing::TestInfo& info = *suite.GetTestInfo(t);
      if (info.result() == nullptr || !info.result()->Skipped()) continue;
      std::fprintf(stderr, "FAILED: %s.%s was skipped; a skip fails the unit tier\n", suite.name(),
                   info.name());
    }
  }
  return 1;
}

// Not a test of the product: a binary with one skipped test, run by ctest
// (unit_main.skip_fails) to show that unit_main.cc turns a skip into a failed run.
#include <gtest/gtest.h>

TEST(UnitMainSelfTest, Skips) { GTEST_SKIP() << "a deliberate skip"; }
TEST(UnitMainSelfTest, Passes) { EXPECT_EQ(1 + 1, 2); }

// RandomId (common/random_id.h): length and alphabet of real ids, uniform positions, and with
// an injected byte source: short reads, EINTR retried, other errors and biased bytes refused.
// Runs as any user.
#include "common/random_id.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace mp::common {
namespace {

TEST(RandomIdTest, LengthAndAlphabet) {
  for (const size_t length : {0u, 1u, 32u, 64u, 1000u}) {
    Result<std::string> id = RandomId(kAlnumAlphabet, length);
    ASSERT_TRUE(id) << id.error().ToString();
    EXPECT_EQ(id->size(), length);
    EXPECT_EQ(id->find_first_not_of(kAlnumAlphabet), std::string::npos) << *id;
  }
  Result<std::string> hex = RandomId(kHexAlphabet, 32);
  ASSERT_TRUE(hex);
  EXPECT_EQ(hex->find_first_not_of("0123456789abcdef"), std::string::npos) << *hex;
}

TEST(RandomIdTest, IdsDiffer) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    Result<std::string> id = RandomId(kAlnumAlphabet, 20);
    ASSERT_TRUE(id);
    EXPECT_TRUE(seen.insert(*id).second) << "repeated id " << *id;
  }
}

TEST(RandomIdTest, EveryCharacterOccurs) {
  // 62,000 draws: each character is expected 1,000 times; below 700 or above 1,300 would be
  // more than 9 standard deviations off (a biased or broken mapping, not chance).
  Result<std::string> id = RandomId(kAlnumAlphabet, 62'000);
  ASSERT_TRUE(id);
  std::map<char, int> counts;
  for (const char c : *id) ++counts[c];
  ASSERT_EQ(counts.size(), kAlnumAlphabet.size());
  for (const auto& [c, n] : counts) {
    EXPECT_GT(n, 700) << c;
    EXPECT_LT(n, 1300) << c;
  }
}

TEST(RandomIdTest, BadAlphabets) {
  EXPECT_EQ(RandomId("", 4).error().what, "random id: an alphabet of 0 characters (2..256 needed)");
  EXPECT_FALSE(RandomId("a", 4));
  EXPECT_FALSE(RandomId(std::string(257, 'a'), 4));
  EXPECT_TRUE(RandomId(std::string(256, 'a'), 4));
}

// A scripted byte source: each call returns the next step.
struct Step {
  std::vector<unsigned char> bytes;  // written when err == 0
  int err = 0;                       // otherwise: -1 with this errno
};
std::vector<Step> g_steps;
size_t g_calls = 0;

ssize_t Scripted(void* buf, size_t len) {
  if (g_calls >= g_steps.size()) {
    ADD_FAILURE() << "the byte source was called more often than scripted";
    errno = EIO;
    return -1;
  }
  const Step& s = g_steps[g_calls++];
  if (s.err != 0) {
    errno = s.err;
    return -1;
  }
  const size_t n = std::min(len, s.bytes.size());
  std::memcpy(buf, s.bytes.data(), n);
  return static_cast<ssize_t>(n);
}

TEST(RandomIdFromTest, ShortReadsAndEintrAreRetried) {
  g_steps = {{{0x01}}, {{}, EINTR}, {{0x0a, 0x1f}}, {{}, EINTR}, {{0xff}}};
  g_calls = 0;
  Result<std::string> id = RandomIdFrom(&Scripted, kHexAlphabet, 4);
  ASSERT_TRUE(id) << id.error().ToString();
  EXPECT_EQ(*id, "1aff");
  EXPECT_EQ(g_calls, 5u);
}

TEST(RandomIdFromTest, BiasedBytesAreDrawnAgain) {
  // 62 characters: 256 % 62 == 8, so bytes 248..255 would make "0".."7" likelier; skipped.
  g_steps = {{{248, 255, 61, 249, 62}}};
  g_calls = 0;
  Result<std::string> id = RandomIdFrom(&Scripted, kAlnumAlphabet, 2);
  ASSERT_TRUE(id) << id.error().ToString();
  EXPECT_EQ(*id, "z0");
}

TEST(RandomIdFromTest, OtherErrorsAreReported) {
  g_steps = {{{0x01}}, {{}, ENOSYS}};
  g_calls = 0;
  Result<std::string> id = RandomIdFrom(&Scripted, kHexAlphabet, 4);
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().errnum, ENOSYS);
  EXPECT_EQ(id.error().what, "getrandom(64 bytes)");

  g_steps = {{{}}};  // zero bytes: would loop forever
  g_calls = 0;
  EXPECT_FALSE(RandomIdFrom(&Scripted, kHexAlphabet, 4));
}

}  // namespace
}  // namespace mp::common

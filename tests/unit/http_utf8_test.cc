// Utf8Carry and ToValidUtf8 (src/http/utf8.h): valid text passes through unchanged whatever
// the chunking, invalid bytes become U+FFFD as maximal subparts, and the consumed count always
// adds up with the carry.
#include "http/utf8.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace mp::http {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

std::string Repl(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += kFffd;
  return s;
}

// Feeds `pieces` in order, checks the consumed-count invariant after each call, and returns
// the output including the flush at the end.
std::string FeedPieces(const std::vector<std::string_view>& pieces) {
  Utf8Carry carry;
  std::string out;
  size_t fed = 0;
  size_t consumed = 0;
  for (std::string_view piece : pieces) {
    fed += piece.size();
    consumed += carry.Feed(piece, &out);
    EXPECT_EQ(consumed + carry.carried(), fed);
    EXPECT_LE(carry.carried(), 3u);
  }
  carry.Flush(&out);
  EXPECT_EQ(carry.carried(), 0u);
  return out;
}

// ---- ToValidUtf8: valid input is returned unchanged.

TEST(ToValidUtf8Test, ValidInputIsUnchanged) {
  const std::vector<std::string> valid = {
      "",
      "plain ASCII\n\t\x01\x7f",
      std::string("nul\0inside", 10),
      "\xC2\x80",                                    // U+0080, smallest 2-byte
      "\xDF\xBF",                                    // U+07FF, largest 2-byte
      "\xE0\xA0\x80",                                // U+0800, smallest 3-byte
      "\xED\x9F\xBF",                                // U+D7FF, just below the surrogates
      "\xEE\x80\x80",                                // U+E000, just above the surrogates
      "\xEF\xBF\xBF",                                // U+FFFF
      "\xF0\x90\x80\x80",                            // U+10000, smallest 4-byte
      "\xF4\x8F\xBF\xBF",                            // U+10FFFF, largest code point
      "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80",  // é € 😀
      kFffd,
  };
  for (const std::string& s : valid) {
    EXPECT_EQ(ToValidUtf8(s), s) << testing::PrintToString(s);
  }
}

// ---- ToValidUtf8: each maximal invalid subpart becomes one U+FFFD.

struct InvalidCase {
  std::string in;
  std::string want;
};

TEST(ToValidUtf8Test, InvalidSequences) {
  const std::vector<InvalidCase> cases = {
      {"\x80", Repl(1)},                    // stray continuation
      {"\xBF", Repl(1)},                    // stray continuation
      {"a\x80\x80z", "a" + Repl(2) + "z"},  // each stray byte
      {"\xC0\x80", Repl(2)},                // overlong NUL
      {"\xC1\xBF", Repl(2)},                // overlong 2-byte
      {"\xE0\x80\x80", Repl(3)},            // overlong 3-byte
      {"\xE0\x9F\xBF", Repl(3)},            // overlong 3-byte, top
      {"\xED\xA0\x80", Repl(3)},            // surrogate U+D800
      {"\xED\xBF\xBF", Repl(3)},            // surrogate U+DFFF
      {"\xF0\x80\x80\x80", Repl(4)},        // overlong 4-byte
      {"\xF0\x8F\xBF\xBF", Repl(4)},        // overlong 4-byte, top
      {"\xF4\x90\x80\x80", Repl(4)},        // U+110000
      {"\xF5\x80\x80\x80", Repl(4)},        // lead beyond F4
      {"\xF8\x88\x80\x80\x80", Repl(5)},    // old 5-byte form
      {"\xFE", Repl(1)},
      {"\xFF", Repl(1)},
      {"\xC3", Repl(1)},          // cut at the end
      {"\xE2\x82", Repl(1)},      // cut at the end: one U+FFFD
      {"\xF0\x9F\x98", Repl(1)},  // cut at the end: one U+FFFD
      {"\xE2\x82"
       "A",
       Repl(1) + "A"},  // cut by ASCII
      {"\xF0\x9F\x98"
       "x",
       Repl(1) + "x"},                                     // cut by ASCII
      {"\xE2\x28\xA1", Repl(1) + "(" + Repl(1)},           // cut, then a stray byte
      {"\xC3\xC3\xA9", Repl(1) + "\xC3\xA9"},              // cut by another lead
      {"\xF0\x9F\xE2\x82\xAC", Repl(1) + "\xE2\x82\xAC"},  // cut by a 3-byte character
      {"\xE0\xA0\xC0", Repl(2)},                           // cut, then an invalid lead
      {"\xDF\xC0\x80", Repl(3)},
  };
  for (const InvalidCase& c : cases) {
    EXPECT_EQ(ToValidUtf8(c.in), c.want) << testing::PrintToString(c.in);
  }
}

// ---- Utf8Carry: splits at every point of multi-byte characters.

TEST(Utf8CarryTest, EverySplitOfValidCharacters) {
  const std::vector<std::string> texts = {
      "\xC3\xA9",          // 2-byte
      "\xE2\x82\xAC",      // 3-byte
      "\xF0\x9F\x98\x80",  // 4-byte
      "\xF4\x8F\xBF\xBF",  // 4-byte, largest
      "a\xC3\xA9"
      "b\xE2\x82\xAC"
      "c\xF0\x9F\x98\x80"
      "d",
      "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xE2\x82\xAC\xC3\xA9",
  };
  for (const std::string& text : texts) {
    for (size_t i = 0; i <= text.size(); ++i) {
      const std::string_view v(text);
      EXPECT_EQ(FeedPieces({v.substr(0, i), v.substr(i)}), text)
          << testing::PrintToString(text) << " split at " << i;
      for (size_t j = i; j <= text.size(); ++j) {
        EXPECT_EQ(FeedPieces({v.substr(0, i), v.substr(i, j - i), v.substr(j)}), text)
            << testing::PrintToString(text) << " split at " << i << ", " << j;
      }
    }
  }
}

TEST(Utf8CarryTest, ByteAtATime) {
  const std::string text = "x\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80y";
  Utf8Carry carry;
  std::string out;
  size_t consumed = 0;
  for (char c : text) consumed += carry.Feed(std::string_view(&c, 1), &out);
  EXPECT_EQ(out, text);
  EXPECT_EQ(consumed, text.size());
  EXPECT_EQ(carry.carried(), 0u);
}

// The return value counts bytes consumed for good: carried-in bytes count when they complete,
// carried-out bytes do not.
TEST(Utf8CarryTest, ReturnValueAccountsForTheCarry) {
  Utf8Carry carry;
  std::string out;
  EXPECT_EQ(carry.Feed("ab\xE2", &out), 2u);
  EXPECT_EQ(out, "ab");
  EXPECT_EQ(carry.carried(), 1u);
  EXPECT_EQ(carry.Feed("\x82", &out), 0u);  // still incomplete: both bytes carried
  EXPECT_EQ(carry.carried(), 2u);
  EXPECT_EQ(out, "ab");
  EXPECT_EQ(carry.Feed("\xAC!", &out), 4u);  // two carried in + two new
  EXPECT_EQ(out, "ab\xE2\x82\xAC!");
  EXPECT_EQ(carry.carried(), 0u);
  EXPECT_EQ(carry.Feed("", &out), 0u);
  EXPECT_EQ(carry.Feed("\xF0\x9F\x98\x80\xF0", &out), 4u);
  EXPECT_EQ(carry.carried(), 1u);
}

TEST(Utf8CarryTest, CarriedSequenceBrokenByNonContinuation) {
  Utf8Carry carry;
  std::string out;
  EXPECT_EQ(carry.Feed("\xE2\x82", &out), 0u);
  EXPECT_EQ(carry.Feed("A", &out), 3u);
  EXPECT_EQ(out, kFffd + "A");
  EXPECT_EQ(carry.carried(), 0u);

  out.clear();
  EXPECT_EQ(carry.Feed("\xF0\x9F", &out), 0u);
  EXPECT_EQ(carry.Feed("\xC3\xA9", &out), 4u);  // a new lead breaks the carried sequence
  EXPECT_EQ(out, kFffd + "\xC3\xA9");

  out.clear();
  EXPECT_EQ(carry.Feed("\xF0\x9F", &out), 0u);
  EXPECT_EQ(carry.Feed("\xE2", &out), 2u);  // broken, and the new lead is carried in turn
  EXPECT_EQ(out, kFffd);
  EXPECT_EQ(carry.carried(), 1u);
}

TEST(Utf8CarryTest, CarriedLeadWithInvalidSecondByte) {
  // The second byte's range depends on the lead, also across a split.
  const std::vector<InvalidCase> cases = {
      {"\xE0\x80", Repl(2)},  // overlong
      {"\xED\xA0", Repl(2)},  // surrogate
      {"\xF0\x8F", Repl(2)},  // overlong
      {"\xF4\x90", Repl(2)},  // beyond U+10FFFF
  };
  for (const InvalidCase& c : cases) {
    const std::string_view v(c.in);
    EXPECT_EQ(FeedPieces({v.substr(0, 1), v.substr(1)}), c.want) << testing::PrintToString(c.in);
  }
}

TEST(Utf8CarryTest, InvalidBytesAreReplacedImmediately) {
  Utf8Carry carry;
  std::string out;
  EXPECT_EQ(carry.Feed("\x80\xFF\xC0", &out), 3u);  // nothing here can ever become valid
  EXPECT_EQ(out, Repl(3));
  EXPECT_EQ(carry.carried(), 0u);
}

TEST(Utf8CarryTest, FlushReplacesAnIncompleteTail) {
  Utf8Carry carry;
  std::string out;
  EXPECT_EQ(carry.Feed("ok\xF0\x9F\x98", &out), 2u);
  EXPECT_EQ(carry.carried(), 3u);
  carry.Flush(&out);
  EXPECT_EQ(out, "ok" + kFffd);
  EXPECT_EQ(carry.carried(), 0u);
  carry.Flush(&out);  // nothing carried: nothing emitted
  EXPECT_EQ(out, "ok" + kFffd);
  EXPECT_EQ(carry.Feed("\x98", &out), 1u);  // the carry is gone: a stray byte now
  EXPECT_EQ(out, "ok" + kFffd + kFffd);
}

// Chunked decoding equals decoding in one go, for every split of tricky inputs.
TEST(Utf8CarryTest, ChunkedEqualsWhole) {
  const std::vector<std::string> inputs = {
      "\xE2\x28\xA1",
      "\xC3\xC3\xA9",
      "\xF0\x9F\xE2\x82\xAC",
      "\xE0\xA0\xC0",
      "\xED\xA0\x80z",
      "\xF4\x90\x80\x80",
      "a\x80\xE2\x82\xAC\xF0\x9F\x98\x80\xC0\xAF\xE2\x82",
      "\xF0\x9F\x98\x80\xF0\x9F\x98",
  };
  for (const std::string& in : inputs) {
    const std::string whole = ToValidUtf8(in);
    const std::string_view v(in);
    for (size_t i = 0; i <= in.size(); ++i) {
      for (size_t j = i; j <= in.size(); ++j) {
        EXPECT_EQ(FeedPieces({v.substr(0, i), v.substr(i, j - i), v.substr(j)}), whole)
            << testing::PrintToString(in) << " split at " << i << ", " << j;
      }
    }
  }
}

// Pseudo-random bytes biased towards UTF-8 structure: chunked output equals whole output, and
// the output is valid (decoding it again changes nothing).
TEST(Utf8CarryTest, RandomInputsChunkedEqualsWholeAndValid) {
  uint64_t state = 0x9E3779B97F4A7C15ULL;
  const auto next = [&state]() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  static constexpr uint8_t kInteresting[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F,
                                             0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
                                             0xE1, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF};
  for (int round = 0; round < 2000; ++round) {
    std::string in;
    const size_t len = next() % 24;
    for (size_t i = 0; i < len; ++i) {
      in.push_back(static_cast<char>(kInteresting[next() % sizeof(kInteresting)]));
    }
    const std::string whole = ToValidUtf8(in);
    ASSERT_EQ(ToValidUtf8(whole), whole);
    std::vector<std::string_view> pieces;
    std::string_view rest(in);
    while (!rest.empty()) {
      const size_t n = 1 + next() % 4;
      pieces.push_back(rest.substr(0, n));
      rest.remove_prefix(std::min(n, rest.size()));
    }
    ASSERT_EQ(FeedPieces(pieces), whole) << testing::PrintToString(in);
  }
}

}  // namespace
}  // namespace mp::http

// Auth of monkeyproof-api: token vetting (short, placeholders, repeated characters,
// whitespace), TokenSet::Load from a file (mode check), the environment and a systemd
// credential directory, Accepts on near misses, ExtractToken, and FailureLimiter with injected
// time points (an IPv6 client counted by its /64). Runs as any user; files live in a mkdtemp
// directory under /tmp.
#include "http/auth.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "http/client_address.h"
#include "http/connection_limits.h"

namespace mp::http {
namespace {

using std::chrono::seconds;

const std::string kGood = "0123456789abcdef0123456789abcdef";  // 32 characters
const std::string kGood2 = "fedcba9876543210fedcba9876543210ff";

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/mp-http-auth-test-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  // Writes `text` to `name` with `mode` and returns the path.
  std::string Write(const std::string& name, const std::string& text, mode_t mode = 0600) const {
    const std::string p = path_ + "/" + name;
    {
      std::ofstream f(p, std::ios::trunc);
      f << text;
    }
    EXPECT_EQ(::chmod(p.c_str(), mode), 0);
    return p;
  }

 private:
  std::string path_;
};

void ExpectRefused(const std::string& token, const std::string& reason_part) {
  const auto r = CheckToken(token);
  ASSERT_FALSE(r.has_value()) << "accepted: " << token;
  EXPECT_NE(r.error().what.find(reason_part), std::string::npos) << r.error().what;
  // "token" is a word of every message; the others must not appear.
  if (!token.empty() && token != "token") {
    EXPECT_EQ(r.error().what.find(token), std::string::npos)
        << "the message echoes the token: " << r.error().what;
  }
}

TEST(CheckTokenTest, AcceptsRandomLookingTokens) {
  EXPECT_TRUE(CheckToken(kGood).has_value());
  EXPECT_TRUE(CheckToken(kGood2).has_value());
  EXPECT_TRUE(CheckToken("Zm9vYmFyYmF6cXV4LXJhbmRvbS1ieXRlcy0xMjM0NTY3OA").has_value());
  EXPECT_TRUE(CheckToken(std::string(kMinTokenChars - 1, 'x') + "y").has_value());
}

TEST(CheckTokenTest, RefusesEmptyAndShort) {
  ExpectRefused("", "empty");
  ExpectRefused("abc123", "at least 32");
  ExpectRefused(kGood.substr(0, 31), "31 characters");
}

TEST(CheckTokenTest, RefusesPlaceholdersWhateverTheirCase) {
  for (const char* p :
       {"change-me", "CHANGEME", "Change-This", "your-token-here", "your-secret-token", "secret",
        "token", "dev-token", "test-token", "password", "Default", "monkeyproof",
        "dev-secret-change-me", "DEV-SECRET-CHANGE-ME"}) {
    ExpectRefused(p, "placeholder");
  }
  // Padded to a valid length, a placeholder phrase is still one.
  ExpectRefused("change-me-0123456789abcdef0123456789", "placeholder");
  ExpectRefused("0123456789abcdef0123456789-CHANGEME", "placeholder");
  ExpectRefused("your-token-here-0123456789abcdef0123", "placeholder");
}

TEST(CheckTokenTest, RefusesOneRepeatedCharacterAtAnyLength) {
  ExpectRefused(std::string(32, 'a'), "repeated");
  ExpectRefused(std::string(64, 'Z'), "repeated");
  ExpectRefused(std::string(500, '0'), "repeated");
  ExpectRefused("xxxx", "repeated");
}

TEST(CheckTokenTest, RefusesWhitespaceAndControlCharacters) {
  ExpectRefused(kGood + " x", "whitespace");
  ExpectRefused(" " + kGood, "whitespace");
  ExpectRefused(kGood + "\t", "whitespace");
  ExpectRefused(kGood + "\n", "whitespace");
  ExpectRefused(kGood + std::string(1, '\0'), "control");
  ExpectRefused(kGood + "\x7f", "control");
  ExpectRefused(kGood + "\x01", "control");
}

TEST(TokenSetTest, FromTokensVetsEveryToken) {
  auto ok = TokenSet::FromTokens({kGood, kGood2});
  ASSERT_TRUE(ok.has_value()) << ok.error().ToString();
  EXPECT_EQ(ok->size(), 2u);

  auto bad = TokenSet::FromTokens({kGood, "change-me"});
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().what.find("token 2 of 2"), std::string::npos) << bad.error().what;

  EXPECT_FALSE(TokenSet::FromTokens({}).has_value());
}

TEST(TokenSetTest, FromTokensKeepsDuplicatesOnce) {
  auto set = TokenSet::FromTokens({kGood, kGood2, kGood});
  ASSERT_TRUE(set.has_value());
  EXPECT_EQ(set->size(), 2u);
}

TEST(TokenSetTest, AcceptsExactlyTheConfiguredTokens) {
  auto set = TokenSet::FromTokens({kGood, kGood2});
  ASSERT_TRUE(set.has_value());
  EXPECT_TRUE(set->Accepts(kGood));
  EXPECT_TRUE(set->Accepts(kGood2));

  EXPECT_FALSE(set->Accepts(""));
  EXPECT_FALSE(set->Accepts(kGood.substr(0, 31)));  // prefix
  EXPECT_FALSE(set->Accepts(kGood.substr(1)));      // suffix
  EXPECT_FALSE(set->Accepts(kGood + "0"));          // longer, the token a prefix
  EXPECT_FALSE(set->Accepts(kGood + kGood));        // twice
  EXPECT_FALSE(set->Accepts(std::string(1, '\0') + kGood));
  EXPECT_FALSE(set->Accepts(kGood + std::string(1, '\0')));  // NUL padding is not a match
  EXPECT_FALSE(set->Accepts(kGood.substr(0, 16)));
  for (size_t i = 0; i < kGood.size(); ++i) {  // one byte off, anywhere
    std::string t = kGood;
    t[i] ^= 0x01;
    EXPECT_FALSE(set->Accepts(t)) << "differs at " << i;
  }
  std::string upper = kGood;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_FALSE(set->Accepts(upper));  // tokens are case-sensitive
  // Bytes with the top bit set, against a token of the same length.
  EXPECT_FALSE(set->Accepts(std::string(kGood.size(), '\xff')));
}

TEST(TokenSetTest, EmptySetAcceptsNothing) {
  TokenSet set;
  EXPECT_FALSE(set.Accepts(""));
  EXPECT_FALSE(set.Accepts(kGood));
}

TEST(TokenSetLoadTest, ReadsAFileWithCommentsBlankLinesAndWhitespace) {
  TempDir dir;
  const std::string file =
      dir.Write("tokens", "# API tokens\n\n  " + kGood + "  \r\n\t# rotated in:\n" + kGood2, 0600);
  auto set = TokenSet::Load({file, "", ""});
  ASSERT_TRUE(set.has_value()) << set.error().ToString();
  EXPECT_EQ(set->size(), 2u);
  EXPECT_TRUE(set->Accepts(kGood));
  EXPECT_TRUE(set->Accepts(kGood2));
  EXPECT_FALSE(set->Accepts("  " + kGood));
}

TEST(TokenSetLoadTest, RefusesAWorldReadableFile) {
  TempDir dir;
  const std::string file = dir.Write("tokens", kGood + "\n", 0644);
  auto set = TokenSet::Load({file, "", ""});
  ASSERT_FALSE(set.has_value());
  const std::string& what = set.error().what;
  EXPECT_NE(what.find(file), std::string::npos) << what;
  EXPECT_NE(what.find("chmod o-r"), std::string::npos) << what;
  EXPECT_NE(what.find("0644"), std::string::npos) << what;
  EXPECT_EQ(what.find(kGood), std::string::npos);

  ASSERT_EQ(::chmod(file.c_str(), 0640), 0);  // group-readable is the owner's call
  EXPECT_TRUE(TokenSet::Load({file, "", ""}).has_value());
}

TEST(TokenSetLoadTest, NamesTheLineOfABadToken) {
  TempDir dir;
  const std::string file = dir.Write("tokens", "# c\n" + kGood + "\nchange-me\n", 0600);
  auto set = TokenSet::Load({file, "", ""});
  ASSERT_FALSE(set.has_value());
  EXPECT_NE(set.error().what.find(file + "\" line 3"), std::string::npos) << set.error().what;
  EXPECT_NE(set.error().what.find("placeholder"), std::string::npos) << set.error().what;

  const std::string inner = dir.Write("inner", kGood + " " + kGood2 + "\n", 0600);
  auto spaced = TokenSet::Load({inner, "", ""});
  ASSERT_FALSE(spaced.has_value());
  EXPECT_NE(spaced.error().what.find("whitespace"), std::string::npos);
  EXPECT_EQ(spaced.error().what.find(kGood), std::string::npos);
}

TEST(TokenSetLoadTest, RefusesWhatIsNotARegularFile) {
  TempDir dir;
  auto set = TokenSet::Load({dir.path(), "", ""});
  ASSERT_FALSE(set.has_value());
  EXPECT_NE(set.error().what.find("not a regular file"), std::string::npos) << set.error().what;

  const std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto from_fifo = TokenSet::Load({fifo, kGood, ""});  // must not block on open
  ASSERT_FALSE(from_fifo.has_value());
  EXPECT_NE(from_fifo.error().what.find("not a regular file"), std::string::npos);
}

TEST(TokenSetLoadTest, AConfiguredMissingFileIsAnError) {
  TempDir dir;
  const std::string file = dir.path() + "/absent";
  auto set = TokenSet::Load({file, kGood, ""});  // even with another source
  ASSERT_FALSE(set.has_value());
  EXPECT_EQ(set.error().errnum, ENOENT);
  EXPECT_NE(set.error().what.find(file), std::string::npos) << set.error().what;
}

TEST(TokenSetLoadTest, TheMissingDefaultFileIsSkippedWhenAnotherSourceGivesAToken) {
  // The default path is injected: what this machine has in /etc/monkeyproof does not matter.
  TempDir dir;
  const std::string default_file = dir.path() + "/api-token";
  auto set = TokenSet::Load({default_file, kGood, "", default_file});
  ASSERT_TRUE(set.has_value()) << set.error().ToString();
  EXPECT_TRUE(set->Accepts(kGood));

  auto none = TokenSet::Load({default_file, "", "", default_file});
  ASSERT_FALSE(none.has_value());
  EXPECT_NE(none.error().what.find("no API token: set token_file, MONKEYPROOF_TOKEN or a systemd "
                                   "credential 'monkeyproof-token'"),
            std::string::npos)
      << none.error().what;
  EXPECT_NE(none.error().what.find(default_file + " does not exist"), std::string::npos)
      << none.error().what;

  // The same missing path when it is not the default is an error of its own.
  auto configured = TokenSet::Load({default_file, kGood, "", dir.path() + "/other"});
  ASSERT_FALSE(configured.has_value());
  EXPECT_EQ(configured.error().errnum, ENOENT);
}

TEST(TokenSetLoadTest, TheDefaultFileIsTheBuiltInPathUnlessInjected) {
  EXPECT_EQ(TokenSources{}.default_file, kDefaultTokenFile);
  const TokenSources three = {"/x", "", ""};
  EXPECT_EQ(three.default_file, "/etc/monkeyproof/api-token");
}

TEST(TokenSetLoadTest, NoSourceIsAnError) {
  auto set = TokenSet::Load({"", "", ""});
  ASSERT_FALSE(set.has_value());
  EXPECT_EQ(set.error().what,
            "no API token: set token_file, MONKEYPROOF_TOKEN or a systemd credential "
            "'monkeyproof-token'");
}

TEST(TokenSetLoadTest, AFileWithOnlyCommentsGivesNoToken) {
  TempDir dir;
  const std::string file = dir.Write("tokens", "# put the token here\n\n", 0600);
  auto alone = TokenSet::Load({file, "", ""});
  ASSERT_FALSE(alone.has_value());
  EXPECT_NE(alone.error().what.find("holds no token"), std::string::npos) << alone.error().what;
  auto with_env = TokenSet::Load({file, kGood, ""});
  ASSERT_TRUE(with_env.has_value());
  EXPECT_EQ(with_env->size(), 1u);
}

TEST(TokenSetLoadTest, EnvironmentValue) {
  auto set = TokenSet::Load({"", kGood, ""});
  ASSERT_TRUE(set.has_value());
  EXPECT_TRUE(set->Accepts(kGood));

  auto trimmed = TokenSet::Load({"", kGood + "\n", ""});  // as from $(cat file) in a unit
  ASSERT_TRUE(trimmed.has_value());
  EXPECT_TRUE(trimmed->Accepts(kGood));

  auto placeholder = TokenSet::Load({"", "dev-secret-change-me", ""});
  ASSERT_FALSE(placeholder.has_value());
  EXPECT_NE(placeholder.error().what.find("environment"), std::string::npos);
  EXPECT_EQ(placeholder.error().what.find("dev-secret-change-me"), std::string::npos);

  auto shorter = TokenSet::Load({"", "abcdef", ""});
  ASSERT_FALSE(shorter.has_value());
  EXPECT_EQ(shorter.error().what.find("abcdef"), std::string::npos) << shorter.error().what;
}

TEST(TokenSetLoadTest, CredentialDirectory) {
  TempDir dir;
  // No mode check on the credential: systemd owns it.
  dir.Write("monkeyproof-token", kGood2 + "\n", 0644);
  auto set = TokenSet::Load({"", "", dir.path()});
  ASSERT_TRUE(set.has_value()) << set.error().ToString();
  EXPECT_TRUE(set->Accepts(kGood2));
  EXPECT_FALSE(set->Accepts(kGood));

  TempDir other;  // a credentials directory without ours
  other.Write("something-else", kGood, 0600);
  auto missing = TokenSet::Load({"", "", other.path()});
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().what.find("no API token"), std::string::npos);
  auto missing_env = TokenSet::Load({"", kGood, other.path()});
  ASSERT_TRUE(missing_env.has_value());

  TempDir bad;
  bad.Write("monkeyproof-token", "secret\n", 0600);
  auto refused = TokenSet::Load({"", kGood, bad.path()});
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().what.find("credential"), std::string::npos) << refused.error().what;
}

TEST(TokenSetLoadTest, TheUnionOfAllSources) {
  TempDir dir;
  const std::string third = "Q29uc3RhbnQtdGltZS1pcy1hLXByb21pc2U";
  const std::string file = dir.Write("tokens", kGood + "\n", 0600);
  TempDir creds;
  creds.Write("monkeyproof-token", third + "\n" + kGood + "\n", 0600);
  auto set = TokenSet::Load({file, kGood2, creds.path()});
  ASSERT_TRUE(set.has_value()) << set.error().ToString();
  EXPECT_EQ(set->size(), 3u);  // kGood is in two sources, kept once
  EXPECT_TRUE(set->Accepts(kGood));
  EXPECT_TRUE(set->Accepts(kGood2));
  EXPECT_TRUE(set->Accepts(third));
}

TEST(ExtractTokenTest, BearerHeader) {
  EXPECT_EQ(ExtractToken("Bearer abc", nullptr, false), "abc");
  EXPECT_EQ(ExtractToken("bearer abc", nullptr, false), "abc");
  EXPECT_EQ(ExtractToken("BEARER abc", nullptr, false), "abc");
  EXPECT_EQ(ExtractToken("BeArEr    abc", nullptr, false), "abc");
  EXPECT_EQ(ExtractToken("  Bearer abc  ", nullptr, false), "abc");
  EXPECT_EQ(ExtractToken("Bearer " + kGood, nullptr, false), kGood);
}

TEST(ExtractTokenTest, MalformedHeadersGiveNoToken) {
  EXPECT_EQ(ExtractToken("Bearer", nullptr, false), std::nullopt);
  EXPECT_EQ(ExtractToken("Bearer ", nullptr, false), std::nullopt);
  EXPECT_EQ(ExtractToken("Bearer    ", nullptr, false), std::nullopt);
  EXPECT_EQ(ExtractToken("Bearerabc", nullptr, false), std::nullopt);
  EXPECT_EQ(ExtractToken("Bearer\tabc", nullptr, false), std::nullopt);
  EXPECT_EQ(ExtractToken("Bearer a b", nullptr, false), std::nullopt);
  EXPECT_EQ(ExtractToken("Basic dXNlcjpwYXNz", nullptr, false), std::nullopt);
  EXPECT_EQ(ExtractToken("Token abc", nullptr, false), std::nullopt);
  EXPECT_EQ(ExtractToken(kGood, nullptr, false), std::nullopt);
}

TEST(ExtractTokenTest, QueryOnlyWhenAllowedAndNoHeader) {
  const std::string q = kGood2;
  const std::string empty;
  EXPECT_EQ(ExtractToken("", &q, true), q);
  EXPECT_EQ(ExtractToken("", &q, false), std::nullopt);
  EXPECT_EQ(ExtractToken("", nullptr, true), std::nullopt);
  EXPECT_EQ(ExtractToken("", &empty, true), std::nullopt);
  EXPECT_EQ(ExtractToken("", nullptr, false), std::nullopt);
  // The header wins over the query.
  EXPECT_EQ(ExtractToken("Bearer " + kGood, &q, true), kGood);
  // A present but malformed header does not fall back to the query.
  EXPECT_EQ(ExtractToken("Basic dXNlcjpwYXNz", &q, true), std::nullopt);
  EXPECT_EQ(ExtractToken("Bearer", &q, true), std::nullopt);
}

class FailureLimiterTest : public ::testing::Test {
 protected:
  FailureLimiter::Clock::time_point t0_{std::chrono::hours(1000)};
};

TEST_F(FailureLimiterTest, BlocksAfterTheLimitForTheRestOfTheWindow) {
  FailureLimiter lim(3, seconds(60));
  uint32_t retry = 0;
  EXPECT_FALSE(lim.Blocked("10.0.0.1", t0_, &retry));
  lim.RecordFailure("10.0.0.1", t0_);
  lim.RecordFailure("10.0.0.1", t0_ + seconds(1));
  EXPECT_FALSE(lim.Blocked("10.0.0.1", t0_ + seconds(2), &retry));
  lim.RecordFailure("10.0.0.1", t0_ + seconds(2));
  ASSERT_TRUE(lim.Blocked("10.0.0.1", t0_ + seconds(2), &retry));
  EXPECT_EQ(retry, 58u);  // the window started at t0_
  ASSERT_TRUE(lim.Blocked("10.0.0.1", t0_ + std::chrono::milliseconds(59'500), &retry));
  EXPECT_EQ(retry, 1u);  // rounded up, never 0
  ASSERT_TRUE(lim.Blocked("10.0.0.1", t0_ + std::chrono::milliseconds(10'200), &retry));
  EXPECT_EQ(retry, 50u);
  EXPECT_FALSE(lim.Blocked("10.0.0.2", t0_ + seconds(2), &retry));   // other addresses unaffected
  EXPECT_FALSE(lim.Blocked("10.0.0.1", t0_ + seconds(60), &retry));  // the window is over
  EXPECT_TRUE(lim.Blocked("10.0.0.1", t0_ + seconds(59), nullptr));
}

TEST_F(FailureLimiterTest, FixedWindowsRestartOnTheFirstFailureAfterTheEnd) {
  FailureLimiter lim(2, seconds(60));
  lim.RecordFailure("a", t0_);
  lim.RecordFailure("a", t0_ + seconds(59));
  EXPECT_TRUE(lim.Blocked("a", t0_ + seconds(59), nullptr));
  // One failure in the next window does not block; the count restarted.
  lim.RecordFailure("a", t0_ + seconds(61));
  EXPECT_FALSE(lim.Blocked("a", t0_ + seconds(61), nullptr));
  lim.RecordFailure("a", t0_ + seconds(100));
  uint32_t retry = 0;
  ASSERT_TRUE(lim.Blocked("a", t0_ + seconds(100), &retry));
  EXPECT_EQ(retry, 21u);  // the new window began at t0_+61
}

TEST_F(FailureLimiterTest, FailuresWhileBlockedDoNotExtendTheWindow) {
  FailureLimiter lim(1, seconds(60));
  lim.RecordFailure("a", t0_);
  for (int i = 1; i < 60; ++i) lim.RecordFailure("a", t0_ + seconds(i));
  EXPECT_TRUE(lim.Blocked("a", t0_ + seconds(59), nullptr));
  EXPECT_FALSE(lim.Blocked("a", t0_ + seconds(60), nullptr));
}

TEST_F(FailureLimiterTest, EvictsTheLeastRecentlyFailing) {
  FailureLimiter lim(1, seconds(60), 3);
  lim.RecordFailure("a", t0_);
  lim.RecordFailure("b", t0_ + seconds(1));
  lim.RecordFailure("c", t0_ + seconds(2));
  lim.RecordFailure("a", t0_ + seconds(3));  // a is now the most recent
  EXPECT_EQ(lim.tracked(), 3u);
  lim.RecordFailure("d", t0_ + seconds(4));  // evicts b
  EXPECT_EQ(lim.tracked(), 3u);
  const auto now = t0_ + seconds(5);
  EXPECT_TRUE(lim.Blocked("a", now, nullptr));
  EXPECT_FALSE(lim.Blocked("b", now, nullptr));
  EXPECT_TRUE(lim.Blocked("c", now, nullptr));
  EXPECT_TRUE(lim.Blocked("d", now, nullptr));
  lim.RecordFailure("e", t0_ + seconds(6));  // evicts c
  EXPECT_FALSE(lim.Blocked("c", t0_ + seconds(6), nullptr));
  EXPECT_TRUE(lim.Blocked("a", t0_ + seconds(6), nullptr));
}

TEST_F(FailureLimiterTest, StaysBoundedAndDropsExpiredEntries) {
  FailureLimiter lim(5, seconds(60), 100);
  for (int i = 0; i < 1000; ++i) lim.RecordFailure("10.0.0." + std::to_string(i), t0_);
  EXPECT_EQ(lim.tracked(), 100u);
  // A failure after every window has ended drops the expired entries first.
  lim.RecordFailure("192.0.2.1", t0_ + seconds(120));
  EXPECT_EQ(lim.tracked(), 1u);
}

TEST_F(FailureLimiterTest, ZeroLimitIsTreatedAsOne) {
  FailureLimiter lim(0, seconds(60));
  EXPECT_FALSE(lim.Blocked("a", t0_, nullptr));
  lim.RecordFailure("a", t0_);
  EXPECT_TRUE(lim.Blocked("a", t0_, nullptr));
}

// The lockout of issue 15: 21 bad requests from one address (everybody's, behind a proxy),
// then a client with the right token from the same address.
TEST_F(FailureLimiterTest, AValidCredentialIsNeverRefusedAfterOthersFailed) {
  FailureLimiter lim(20, seconds(60));
  uint32_t retry = 0;
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(lim.Judge(false, "127.0.0.1", t0_ + seconds(i), &retry), AuthVerdict::kUnauthorized)
        << i;
  }
  // The 21st bad one is refused by the limiter, and so is every bad one after it.
  EXPECT_EQ(lim.Judge(false, "127.0.0.1", t0_ + seconds(20), &retry), AuthVerdict::kRateLimited);
  EXPECT_EQ(retry, 40u);
  const auto later = t0_ + seconds(21);
  EXPECT_EQ(lim.Judge(true, "127.0.0.1", later, &retry), AuthVerdict::kAllow);
  // No oracle: a blocked address gets 429 for a wrong or missing credential, never the 401
  // that would tell a bad guess from a limited one; and the valid request did not unblock it.
  EXPECT_EQ(lim.Judge(false, "127.0.0.1", later, &retry), AuthVerdict::kRateLimited);
  EXPECT_TRUE(lim.Blocked("127.0.0.1", later, nullptr));
  // Other addresses are unaffected.
  EXPECT_EQ(lim.Judge(false, "127.0.0.2", later, &retry), AuthVerdict::kUnauthorized);

  // Control: the order before this fix (limiter first, then the credential) refuses the valid
  // client from the blocked address: the probe above would have caught it.
  auto old_order = [&](bool valid, const std::string& address,
                       FailureLimiter::Clock::time_point now) {
    if (lim.Blocked(address, now, &retry)) return AuthVerdict::kRateLimited;
    if (!valid) {
      lim.RecordFailure(address, now);
      return AuthVerdict::kUnauthorized;
    }
    return AuthVerdict::kAllow;
  };
  EXPECT_EQ(old_order(true, "127.0.0.1", later), AuthVerdict::kRateLimited);
}

TEST_F(FailureLimiterTest, BlockedFailuresAreNotCountedAndTheBlockLifts) {
  FailureLimiter lim(2, seconds(60));
  uint32_t retry = 0;
  EXPECT_EQ(lim.Judge(false, "a", t0_, &retry), AuthVerdict::kUnauthorized);
  EXPECT_EQ(lim.Judge(false, "a", t0_ + seconds(1), &retry), AuthVerdict::kUnauthorized);
  for (int i = 2; i < 60; ++i) {
    EXPECT_EQ(lim.Judge(false, "a", t0_ + seconds(i), &retry), AuthVerdict::kRateLimited) << i;
  }
  // The window ends with the minute of the first failure; the next bad request starts anew.
  EXPECT_EQ(lim.Judge(false, "a", t0_ + seconds(60), &retry), AuthVerdict::kUnauthorized);
  EXPECT_EQ(lim.Judge(true, "b", t0_ + seconds(60), &retry), AuthVerdict::kAllow);
  EXPECT_EQ(lim.tracked(), 1u) << "a valid credential must not create an entry";
}

// The review's probe: a client rotating through addresses of its IPv6 /64 got a fresh limit at
// each. The /64 is one client, as for the connection limits; another /64 and IPv4 neighbours
// stay apart (the control).
TEST_F(FailureLimiterTest, AnIpv6ClientIsCountedByItsSlash64) {
  FailureLimiter lim(6, seconds(60));
  uint32_t retry = 0;
  for (int i = 1; i <= 6; ++i) {
    const std::string rotating = "2001:db8:0:7::" + std::to_string(i);
    EXPECT_EQ(lim.Judge(false, rotating, t0_, &retry), AuthVerdict::kUnauthorized) << rotating;
  }
  EXPECT_EQ(lim.Judge(false, "2001:db8:0:7:ffff:1:2:3", t0_, &retry), AuthVerdict::kRateLimited);
  EXPECT_TRUE(lim.Blocked("2001:db8:0:7::abcd", t0_, nullptr));
  EXPECT_FALSE(lim.Blocked("2001:db8:0:8::1", t0_, nullptr));  // the next /64
  EXPECT_EQ(lim.Judge(false, "2001:db8:0:8::1", t0_, &retry), AuthVerdict::kUnauthorized);
  for (int i = 0; i < 6; ++i) lim.RecordFailure("10.0.0.1", t0_);
  EXPECT_TRUE(lim.Blocked("10.0.0.1", t0_, nullptr));
  EXPECT_FALSE(lim.Blocked("10.0.0.2", t0_, nullptr));  // IPv4 stays per address
  EXPECT_EQ(lim.tracked(), 3u);
  EXPECT_EQ(AddressKey("2001:db8:0:7::1"), "2001:db8:0:7::/64");
  EXPECT_EQ(AddressKey("2001:db8:0:7::1"),
            ConnectionLimits::KeyOf(*ParseIpAddress("2001:db8:0:7:1::9")));
  EXPECT_EQ(AddressKey("::ffff:10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(AddressKey("unknown"), "unknown");
}

}  // namespace
}  // namespace mp::http

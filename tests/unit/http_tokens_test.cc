// Scoped tokens (src/http/token_scope.h, scoped_tokens.h): the token format, scope
// expressions, POST /tokens bodies, and the store: mint, verify (expired, revoked, a wrong
// secret), the bound on live tokens, persistence across a reopen, atomic rewrites (a crash
// mid-write loses no earlier record), and the strict load that refuses a damaged file.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "http/scoped_tokens.h"
#include "http/token_scope.h"
#include "temp_dir.h"

namespace mp::http {
namespace {

using test::TempDir;
using json = nlohmann::json;

constexpr uint64_t kNow = 1'800'000'000'000;  // ms

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TokenScope OwnerScope(Rights rights, std::vector<std::string> presets = {}) {
  TokenScope s;
  s.sessions = {SessionScope::Kind::kOwner, "alice"};
  s.rights = rights;
  s.presets = std::move(presets);
  return s;
}

TEST(TokenFormat, IdOfAWellFormedToken) {
  const std::string t = "mpt_0123456789abcdef_" + std::string(43, 'A');
  ASSERT_EQ(t.size(), kScopedTokenChars);
  EXPECT_EQ(ScopedTokenId(t), "0123456789abcdef");
}

TEST(TokenFormat, RefusesNearMisses) {
  const std::string secret(43, 'x');
  EXPECT_FALSE(ScopedTokenId(""));
  EXPECT_FALSE(ScopedTokenId("mpt_0123456789abcdef_" + secret + "x"));      // too long
  EXPECT_FALSE(ScopedTokenId("mpt_0123456789abcdef_" + secret.substr(1)));  // too short
  EXPECT_FALSE(ScopedTokenId("mpx_0123456789abcdef_" + secret));            // prefix
  EXPECT_FALSE(ScopedTokenId("mpt_0123456789ABCDEF_" + secret));            // upper hex
  EXPECT_FALSE(ScopedTokenId("mpt_0123456789abcdeg_" + secret));            // not hex
  EXPECT_FALSE(ScopedTokenId("mpt_0123456789abcdef-" + secret));            // separator
  EXPECT_FALSE(ScopedTokenId("mpt_0123456789abcdef_" + std::string(42, 'x') + "_"));
  // An admin token (64 hex) is not a scoped one.
  EXPECT_FALSE(ScopedTokenId(std::string(64, 'a')));
}

TEST(ScopeExpression, ParsesEachKind) {
  auto s = ParseSessionScope("session:s-abc123");
  ASSERT_TRUE(std::holds_alternative<SessionScope>(s));
  EXPECT_EQ(std::get<SessionScope>(s), (SessionScope{SessionScope::Kind::kSession, "s-abc123"}));
  s = ParseSessionScope("owner:alice:ci");  // the owner may hold ':'
  ASSERT_TRUE(std::holds_alternative<SessionScope>(s));
  EXPECT_EQ(std::get<SessionScope>(s), (SessionScope{SessionScope::Kind::kOwner, "alice:ci"}));
  s = ParseSessionScope("label: Team=Red ");  // as a spawn stores labels
  ASSERT_TRUE(std::holds_alternative<SessionScope>(s));
  EXPECT_EQ(std::get<SessionScope>(s), (SessionScope{SessionScope::Kind::kLabel, "team=red"}));
  EXPECT_EQ(std::get<SessionScope>(s).ToString(), "label:team=red");
}

TEST(ScopeExpression, RefusesWithAReason) {
  for (const char* bad : {"", "alice", "user:alice", "session:", "session:abc",
                          "owner:", "label:", "label:   ", "owner:a\tb", "session:s-a/b"}) {
    auto s = ParseSessionScope(bad);
    ASSERT_TRUE(std::holds_alternative<std::string>(s)) << bad;
    EXPECT_NE(std::get<std::string>(s).find("scope"), std::string::npos) << bad;
  }
  EXPECT_TRUE(
      std::holds_alternative<std::string>(ParseSessionScope("owner:" + std::string(257, 'a'))));
  EXPECT_TRUE(
      std::holds_alternative<std::string>(ParseSessionScope("label:" + std::string(65, 'a'))));
}

TEST(TokenScopeTest, CoversByKind) {
  TokenScope s;
  s.sessions = {SessionScope::Kind::kSession, "s-1"};
  EXPECT_TRUE(s.Covers("s-1", "", {}, "/srv/ws/a"));
  EXPECT_FALSE(s.Covers("s-2", "", {}, "/srv/ws/a"));
  s.sessions = {SessionScope::Kind::kOwner, "alice"};
  EXPECT_TRUE(s.Covers("s-2", "alice", {}, "/srv/ws/a"));
  EXPECT_FALSE(s.Covers("s-2", "alicex", {}, "/srv/ws/a"));
  EXPECT_FALSE(s.Covers("s-2", "", {}, "/srv/ws/a"));
  s.sessions = {SessionScope::Kind::kLabel, "team=red"};
  EXPECT_TRUE(s.Covers("s-2", "", {"ci", "team=red"}, "/srv/ws/a"));
  EXPECT_FALSE(s.Covers("s-2", "team=red", {"team=blue"}, "/srv/ws/a"));
}

// A token with workspaces covers only sessions in them: what it could have created (review
// rev17b, finding 1). The same owner in a sibling workspace, or one whose name extends the
// workspace's, is not covered; control: without workspaces it is.
TEST(TokenScopeTest, WorkspacesLimitTheSessionsCovered) {
  TokenScope s;
  s.sessions = {SessionScope::Kind::kOwner, "ci"};
  s.workspaces = {"/srv/ws/a", "/srv/ws/c"};
  EXPECT_TRUE(s.Covers("s-1", "ci", {}, "/srv/ws/a"));
  EXPECT_TRUE(s.Covers("s-1", "ci", {}, "/srv/ws/a/proj/sub"));
  EXPECT_TRUE(s.Covers("s-1", "ci", {}, "/srv/ws/c"));
  EXPECT_FALSE(s.Covers("s-1", "ci", {}, "/srv/ws/b"));
  EXPECT_FALSE(s.Covers("s-1", "ci", {}, "/srv/ws/ab"));
  EXPECT_FALSE(s.Covers("s-1", "ci", {}, "/srv/ws"));
  EXPECT_FALSE(s.Covers("s-1", "ci", {}, ""));
  EXPECT_FALSE(s.Covers("s-1", "other", {}, "/srv/ws/a")) << "the owner still counts";
  s.workspaces = {"/"};
  EXPECT_TRUE(s.Covers("s-1", "ci", {}, "/srv/ws/b"));
  s.workspaces.clear();
  EXPECT_TRUE(s.Covers("s-1", "ci", {}, "/srv/ws/b")) << "control: no workspaces, no limit";
}

TEST(MintBodyTest, ParsesAFullBody) {
  auto r = ParseMintBody(
      R"({"sessions":"owner:alice","rights":["read","create","input"],"presets":["codex","claude","codex"],"workspaces":["/srv/ws/b","/srv/ws/a"],"ttlSeconds":3600})",
      86400);
  ASSERT_EQ(r.index(), 0u) << std::get<1>(r).message;
  const MintBody& b = std::get<0>(r);
  EXPECT_EQ(b.ttl_seconds, 3600u);
  EXPECT_TRUE(b.scope.Has(Right::kRead));
  EXPECT_TRUE(b.scope.Has(Right::kInput));
  EXPECT_TRUE(b.scope.Has(Right::kCreate));
  EXPECT_FALSE(b.scope.Has(Right::kKill));
  EXPECT_EQ(b.scope.presets, (std::vector<std::string>{"claude", "codex"}));
  EXPECT_TRUE(b.scope.AllowsPreset("claude"));
  EXPECT_FALSE(b.scope.AllowsPreset("shell"));
  EXPECT_EQ(RightNames(b.scope.rights), (std::vector<std::string>{"read", "input", "create"}));
  // In the order given: the first is the cwd of a create without one.
  EXPECT_EQ(b.scope.workspaces, (std::vector<std::string>{"/srv/ws/b", "/srv/ws/a"}));
}

TEST(MintBodyTest, RefusesNamingTheMember) {
  struct Case {
    const char* body;
    const char* field;
  };
  const Case cases[] = {
      {R"([])", ""},
      {R"({"rights":["read"],"ttlSeconds":60})", "/sessions"},
      {R"({"sessions":"who:x","rights":["read"],"ttlSeconds":60})", "/sessions"},
      {R"({"sessions":"owner:a","ttlSeconds":60})", "/rights"},
      {R"({"sessions":"owner:a","rights":[],"ttlSeconds":60})", "/rights"},
      {R"({"sessions":"owner:a","rights":["admin"],"ttlSeconds":60})", "/rights/0"},
      {R"({"sessions":"owner:a","rights":["read","read"],"ttlSeconds":60})", "/rights/1"},
      {R"({"sessions":"owner:a","rights":["create"],"ttlSeconds":60})", "/presets"},
      // Workspaces: required with create, refused without it, normalized absolute paths.
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"ttlSeconds":60})",
       "/workspaces"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":[],"ttlSeconds":60})",
       "/workspaces"},
      {R"({"sessions":"owner:a","rights":["read"],"workspaces":["/srv/ws/a"],"ttlSeconds":60})",
       "/workspaces"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":"/srv/ws/a","ttlSeconds":60})",
       "/workspaces"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":[1],"ttlSeconds":60})",
       "/workspaces/0"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":["srv/ws"],"ttlSeconds":60})",
       "/workspaces/0"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":["/"],"ttlSeconds":60})",
       "/workspaces/0"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":["/srv/ws/a","/srv/ws/a/../b"],"ttlSeconds":60})",
       "/workspaces/1"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":["/srv/./ws"],"ttlSeconds":60})",
       "/workspaces/0"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":["/srv//ws"],"ttlSeconds":60})",
       "/workspaces/0"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":["/srv/ws/"],"ttlSeconds":60})",
       "/workspaces/0"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":["/srv/w\ts"],"ttlSeconds":60})",
       "/workspaces/0"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":["/a","/b","/a"],"ttlSeconds":60})",
       "/workspaces/2"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":["/1","/2","/3","/4","/5","/6","/7","/8","/9","/10","/11","/12","/13","/14","/15","/16","/17"],"ttlSeconds":60})",
       "/workspaces"},
      {R"({"sessions":"owner:a","rights":["read"],"presets":["claude"],"ttlSeconds":60})",
       "/presets"},
      {R"({"sessions":"owner:a","rights":["create"],"presets":["../x"],"ttlSeconds":60})",
       "/presets/0"},
      {R"({"sessions":"session:s-1","rights":["create"],"presets":["x"],"workspaces":["/w"],"ttlSeconds":60})",
       "/rights"},
      {R"({"sessions":"owner:a","rights":["read"]})", "/ttlSeconds"},
      {R"({"sessions":"owner:a","rights":["read"],"ttlSeconds":0})", "/ttlSeconds"},
      {R"({"sessions":"owner:a","rights":["read"],"ttlSeconds":-5})", "/ttlSeconds"},
      {R"({"sessions":"owner:a","rights":["read"],"ttlSeconds":1.5})", "/ttlSeconds"},
      {R"({"sessions":"owner:a","rights":["read"],"ttlSeconds":86401})", "/ttlSeconds"},
      {R"({"sessions":"owner:a","rights":["read"],"ttlSeconds":60,"admin":true})", "/admin"},
  };
  for (const Case& c : cases) {
    auto r = ParseMintBody(c.body, 86400);
    ASSERT_EQ(r.index(), 1u) << c.body;
    EXPECT_EQ(std::get<1>(r).status, 400) << c.body;
    EXPECT_EQ(std::get<1>(r).field, c.field) << c.body << ": " << std::get<1>(r).message;
  }
}

TEST(MintBodyTest, WorkspaceLimits) {
  // 16 workspaces of 4095 bytes each are the most a token carries.
  json body = {
      {"sessions", "owner:a"}, {"rights", {"create"}}, {"presets", {"x"}}, {"ttlSeconds", 60}};
  for (int i = 0; i < 16; ++i) {
    std::string path = "/w" + std::to_string(i) + "/";
    path += std::string(4095 - path.size(), 'a');
    body["workspaces"].push_back(path);
  }
  auto ok = ParseMintBody(body.dump(), 86400);
  ASSERT_EQ(ok.index(), 0u) << std::get<1>(ok).message;
  EXPECT_EQ(std::get<0>(ok).scope.workspaces.size(), 16u);
  body["workspaces"][3] = body["workspaces"][3].get<std::string>() + "a";  // 4096 bytes
  auto long_one = ParseMintBody(body.dump(), 86400);
  ASSERT_EQ(long_one.index(), 1u);
  EXPECT_EQ(std::get<1>(long_one).field, "/workspaces/3");
  // The client-principals file's scopes follow the same rules.
  EXPECT_EQ(
      ParseScopeObject(R"({"sessions":"owner:a","rights":["create"],"presets":["x"]})").index(),
      1u);
  auto scope = ParseScopeObject(
      R"({"sessions":"owner:a","rights":["create"],"presets":["x"],"workspaces":["/srv/ws/a"]})");
  ASSERT_EQ(scope.index(), 0u);
  EXPECT_EQ(std::get<0>(scope).workspaces, (std::vector<std::string>{"/srv/ws/a"}));
}

TEST(DurationTest, Units) {
  EXPECT_EQ(ParseDuration("45"), 45u);
  EXPECT_EQ(ParseDuration("45s"), 45u);
  EXPECT_EQ(ParseDuration("30m"), 1800u);
  EXPECT_EQ(ParseDuration("1h"), 3600u);
  EXPECT_EQ(ParseDuration("2d"), 172800u);
  for (const char* bad : {"", "h", "0", "0h", "-1h", "1.5h", "1w", "1hh", "9999999999999d"}) {
    EXPECT_FALSE(ParseDuration(bad)) << bad;
  }
}

TEST(Sha256Test, KnownVector) {
  const auto h = Sha256("abc");
  EXPECT_EQ(h[0], 0xba);
  EXPECT_EQ(h[1], 0x78);
  EXPECT_EQ(h[31], 0xad);
}

class TokenStoreTest : public ::testing::Test {
 protected:
  TokenStore Open(size_t max_live = 8) {
    auto s = TokenStore::Open({path_, 86400, max_live});
    EXPECT_TRUE(s) << s.error().ToString();
    return std::move(*s);
  }
  TempDir dir_{"tokens-test"};
  std::string path_ = dir_.path() + "/tokens.json";
};

TEST_F(TokenStoreTest, MintThenVerify) {
  TokenStore store = Open();
  auto m = store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 60, "admin", kNow);
  ASSERT_TRUE(m) << m.error().ToString();
  EXPECT_EQ(ScopedTokenId(m->token), m->record.id);
  const TokenRecord* r = nullptr;
  EXPECT_EQ(store.Verify(m->token, kNow + 1000, &r), TokenVerdict::kValid);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->scope.sessions.value, "alice");
  EXPECT_EQ(r->created_by, "admin");
  EXPECT_EQ(r->expires_at_ms, kNow + 60'000);
  // The file holds the hash, never the token or its secret.
  const std::string text = ReadFile(path_);
  EXPECT_EQ(text.find(m->token.substr(kScopedTokenChars - kTokenSecretChars)), std::string::npos);
  EXPECT_NE(text.find(m->record.id), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(TokenStoreTest, WrongSecretExpiredAndUnknown) {
  TokenStore store = Open();
  auto m = store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 60, "admin", kNow);
  ASSERT_TRUE(m);
  std::string wrong = m->token;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(store.Verify(wrong, kNow), TokenVerdict::kUnknown);
  std::string other_id = m->token;
  other_id[4] = other_id[4] == '0' ? '1' : '0';
  EXPECT_EQ(store.Verify(other_id, kNow), TokenVerdict::kUnknown);
  EXPECT_EQ(store.Verify(m->token, kNow + 60'000), TokenVerdict::kExpired);
  EXPECT_EQ(store.Verify(std::string(64, 'a'), kNow), TokenVerdict::kNotScoped);
}

// By id, for a connection that authenticated earlier (its WebSockets): valid, then revoked;
// expired; unknown.
TEST_F(TokenStoreTest, LookupById) {
  TokenStore store = Open();
  auto m = store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 60, "admin", kNow);
  ASSERT_TRUE(m);
  const TokenRecord* r = nullptr;
  EXPECT_EQ(store.Lookup(m->record.id, kNow, &r), TokenVerdict::kValid);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->expires_at_ms, kNow + 60'000);
  EXPECT_EQ(store.Lookup(m->record.id, kNow + 60'000), TokenVerdict::kExpired);
  EXPECT_EQ(store.Lookup("ffffffffffffffff", kNow), TokenVerdict::kUnknown);
  ASSERT_TRUE(store.Revoke(m->record.id, kNow + 1));
  EXPECT_EQ(store.Lookup(m->record.id, kNow + 2), TokenVerdict::kRevoked);
}

TEST_F(TokenStoreTest, RevocationSurvivesAReopen) {
  std::string token, id;
  {
    TokenStore store = Open();
    auto m = store.Mint(OwnerScope(static_cast<Rights>(Right::kKill)), 600, "admin", kNow);
    ASSERT_TRUE(m);
    token = m->token;
    id = m->record.id;
    auto kept = store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 600, "admin", kNow);
    ASSERT_TRUE(kept);
    auto revoked = store.Revoke(id, kNow + 5);
    ASSERT_TRUE(revoked);
    EXPECT_TRUE(*revoked);
    EXPECT_EQ(store.Verify(token, kNow + 10), TokenVerdict::kRevoked);
  }
  TokenStore again = Open();
  EXPECT_EQ(again.size(), 2u);
  EXPECT_EQ(again.Verify(token, kNow + 10), TokenVerdict::kRevoked);
  const auto list = again.List(kNow + 10);
  ASSERT_EQ(list.size(), 2u);
  const auto& rec = list[0].id == id ? list[0] : list[1];
  EXPECT_EQ(rec.revoked_at_ms, kNow + 5);
  EXPECT_TRUE(rec.scope.Has(Right::kKill));
  auto unknown = again.Revoke("ffffffffffffffff", kNow);
  ASSERT_TRUE(unknown);
  EXPECT_FALSE(*unknown);
}

// A crash in the middle of a write loses no earlier record: the new text goes to "<path>.tmp"
// and replaces the file only by the rename after its fsync. The child is really killed inside
// write(2): RLIMIT_FSIZE lies within the new text, so SIGXFSZ ends it with the .tmp half
// written (the control: the child died of it, and the .tmp holds the cut text).
TEST_F(TokenStoreTest, ACrashMidWriteLosesNoEarlierRecord) {
  std::vector<std::string> tokens;
  std::string revoked_id;
  {
    TokenStore store = Open();
    for (int i = 0; i < 5; ++i) {
      auto m = store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 600, "admin", kNow);
      ASSERT_TRUE(m) << m.error().ToString();
      tokens.push_back(m->token);
      if (i == 0) revoked_id = m->record.id;
    }
    ASSERT_TRUE(store.Revoke(revoked_id, kNow + 1));
  }
  struct stat before {};
  ASSERT_EQ(::stat(path_.c_str(), &before), 0);
  const rlim_t cut = static_cast<rlim_t>(before.st_size) + 100;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const rlimit no_core{0, 0};
    (void)::setrlimit(RLIMIT_CORE, &no_core);
    auto store = TokenStore::Open({path_, 86400, 8});
    if (!store) ::_exit(2);
    const rlimit fsize{cut, cut};
    if (::setrlimit(RLIMIT_FSIZE, &fsize) != 0) ::_exit(3);
    (void)store->Mint(OwnerScope(static_cast<Rights>(Right::kKill)), 600, "admin", kNow + 2);
    ::_exit(4);  // not reached: SIGXFSZ ends the write
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ)
      << "the child was not killed mid-write (status " << status << ")";
  struct stat tmp {};
  ASSERT_EQ(::stat((path_ + ".tmp").c_str(), &tmp), 0);
  EXPECT_EQ(static_cast<rlim_t>(tmp.st_size), cut);  // the new text, cut short

  TokenStore again = Open();
  EXPECT_EQ(again.size(), 5u);
  EXPECT_EQ(again.Verify(tokens[0], kNow + 10), TokenVerdict::kRevoked);
  for (size_t i = 1; i < tokens.size(); ++i) {
    EXPECT_EQ(again.Verify(tokens[i], kNow + 10), TokenVerdict::kValid) << i;
  }
  // The next write replaces the stale .tmp.
  ASSERT_TRUE(again.Mint(OwnerScope(static_cast<Rights>(Right::kKill)), 600, "admin", kNow + 3));
  EXPECT_EQ(Open().size(), 6u);
}

TEST_F(TokenStoreTest, BoundsLiveTokens) {
  TokenStore store = Open(/*max_live=*/3);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto m = store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 60, "admin", kNow);
    ASSERT_TRUE(m);
    ids.push_back(m->record.id);
  }
  auto full = store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 60, "admin", kNow);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().errnum, EMFILE);
  EXPECT_NE(full.error().what.find("revoke"), std::string::npos);
  // A revoked token no longer counts; revoked records beyond twice the bound are forgotten.
  for (int round = 0; round < 5; ++round) {
    ASSERT_TRUE(store.Revoke(ids.back(), kNow));
    ids.pop_back();
    auto m = store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 60, "admin", kNow + 1);
    ASSERT_TRUE(m) << m.error().ToString();
    ids.push_back(m->record.id);
    EXPECT_LE(store.size(), 6u);
  }
  // So does an expired one.
  auto later =
      store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 60, "admin", kNow + 61'000);
  EXPECT_TRUE(later);
}

TEST_F(TokenStoreTest, DisabledWithoutAPath) {
  auto store = TokenStore::Open({"", 86400, 8});
  ASSERT_TRUE(store);
  EXPECT_FALSE(store->enabled());
  auto m = store->Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 60, "admin", kNow);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().errnum, ENOTSUP);
}

TEST_F(TokenStoreTest, FailedWriteMintsNothing) {
  TokenStore store = Open();
  // The temporary file's name taken by a directory: the write fails, and so does the mint.
  ASSERT_EQ(::mkdir((path_ + ".tmp").c_str(), 0700), 0);
  auto m = store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 60, "admin", kNow);
  ASSERT_FALSE(m);
  EXPECT_EQ(store.size(), 0u);
  ASSERT_EQ(::rmdir((path_ + ".tmp").c_str()), 0);
  EXPECT_TRUE(store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 60, "admin", kNow));
}

TEST_F(TokenStoreTest, MissingDirectoryIsAStartError) {
  auto s = TokenStore::Open({dir_.path() + "/nope/tokens.json", 86400, 8});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().what.find("does not exist"), std::string::npos);
}

TEST_F(TokenStoreTest, DamagedFileIsAStartError) {
  const std::string good =
      R"({"format":"monkeyproof-tokens/1","tokens":[{"id":"0123456789abcdef","sha256":")" +
      std::string(64, 'a') +
      R"(","sessions":"owner:a","rights":["read"],"presets":[],"createdAt":1,"expiresAt":2,"createdBy":"admin"}]})";
  dir_.Write("tokens.json", good, 0600);
  {
    auto s = TokenStore::Open({path_, 86400, 8});
    ASSERT_TRUE(s) << s.error().ToString();
    EXPECT_EQ(s->size(), 1u);
  }
  const std::vector<std::pair<std::string, std::string>> damage = {
      {"not json", "{"},
      {"truncated", good.substr(0, good.size() / 2)},
      {"format", std::string(good).replace(good.find("tokens/1"), 8, "tokens/9")},
      {"hash", std::string(good).replace(good.find("aaaa"), 4, "zzzz")},
      {"right", std::string(good).replace(good.find("\"read\""), 6, "\"root\"")},
      {"scope", std::string(good).replace(good.find("owner:a"), 7, "anyone!")},
      {"unknown member", std::string(good).replace(good.find("\"createdBy\""), 0, "\"x\":1,")},
      {"missing member", std::string(good).replace(good.find(",\"createdBy\":\"admin\""), 20, "")},
  };
  for (const auto& [what, text] : damage) {
    dir_.Write("tokens.json", text, 0600);
    auto s = TokenStore::Open({path_, 86400, 8});
    ASSERT_FALSE(s) << what;
    EXPECT_NE(s.error().what.find("damaged"), std::string::npos) << what << ": " << s.error().what;
  }
  // Two records with one id.
  const std::string rec = good.substr(good.find("{\"id\""), good.rfind("]") - good.find("{\"id\""));
  dir_.Write("tokens.json",
             R"({"format":"monkeyproof-tokens/1","tokens":[)" + rec + "," + rec + "]}", 0600);
  EXPECT_FALSE(TokenStore::Open({path_, 86400, 8}));
}

// Whoever can write the store mints tokens or undoes revocations: a file its group or others
// may write, or others may read, stops the start, as for the admin token file. 0600 and 0640
// (group-readable, as the token file may be) are the controls.
TEST_F(TokenStoreTest, LooseModeIsAStartError) {
  const std::string empty = R"({"format":"monkeyproof-tokens/1","tokens":[]})";
  for (const mode_t mode : {0644, 0604, 0620, 0602, 0666}) {
    dir_.Write("tokens.json", empty, mode);
    auto s = TokenStore::Open({path_, 86400, 8});
    ASSERT_FALSE(s) << std::oct << mode;
    EXPECT_NE(s.error().what.find(path_), std::string::npos) << s.error().what;
    EXPECT_NE(s.error().what.find("chmod 0600"), std::string::npos) << s.error().what;
    char want[16];
    std::snprintf(want, sizeof(want), "mode %04o", static_cast<unsigned>(mode));
    EXPECT_NE(s.error().what.find(want), std::string::npos) << s.error().what;
  }
  for (const mode_t mode : {0600, 0640, 0400}) {
    dir_.Write("tokens.json", empty, mode);
    EXPECT_TRUE(TokenStore::Open({path_, 86400, 8})) << std::oct << mode;
  }
  // The API writes it 0600 whatever the umask.
  ASSERT_EQ(::unlink(path_.c_str()), 0);
  const mode_t old_umask = ::umask(0);
  TokenStore store = Open();
  EXPECT_TRUE(store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 60, "admin", kNow));
  ::umask(old_umask);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_TRUE(TokenStore::Open({path_, 86400, 8}));
}

// A revocation the file did not take changes nothing: the token stays valid in this process
// as after a restart, and a retry once the store is writable revokes it (before the fix the
// token was refused here, valid again after a restart, and the retry never wrote the file).
TEST_F(TokenStoreTest, FailedRevocationChangesNothing) {
  TokenStore store = Open();
  auto m = store.Mint(OwnerScope(static_cast<Rights>(Right::kRead)), 600, "admin", kNow);
  ASSERT_TRUE(m);
  // The temporary file's name taken by a directory: the write fails, as root too.
  ASSERT_EQ(::mkdir((path_ + ".tmp").c_str(), 0700), 0);
  auto failed = store.Revoke(m->record.id, kNow + 1);
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().what.find("revoke token " + m->record.id), std::string::npos)
      << failed.error().what;
  EXPECT_EQ(store.Verify(m->token, kNow + 2), TokenVerdict::kValid);
  EXPECT_EQ(TokenStore::Open({path_, 86400, 8})->Verify(m->token, kNow + 2), TokenVerdict::kValid);
  EXPECT_FALSE(store.List(kNow + 2).at(0).revoked_at_ms);

  ASSERT_EQ(::rmdir((path_ + ".tmp").c_str()), 0);
  auto retried = store.Revoke(m->record.id, kNow + 3);
  ASSERT_TRUE(retried) << retried.error().ToString();
  EXPECT_TRUE(*retried);
  EXPECT_EQ(store.Verify(m->token, kNow + 4), TokenVerdict::kRevoked);
  EXPECT_EQ(TokenStore::Open({path_, 86400, 8})->Verify(m->token, kNow + 4),
            TokenVerdict::kRevoked);
}

TEST_F(TokenStoreTest, SerializeParseRoundTrip) {
  TokenStore store = Open();
  ASSERT_TRUE(
      store.Mint(OwnerScope(static_cast<Rights>(Right::kCreate) | static_cast<Rights>(Right::kRead),
                            {"claude", "codex"}),
                 60, "admin", kNow));
  ASSERT_TRUE(store.Mint(OwnerScope(static_cast<Rights>(Right::kInput)), 60,
                         "token:0000000000000000", kNow));
  auto parsed = TokenStore::Parse(ReadFile(path_));
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(TokenStore::Serialize(*parsed), ReadFile(path_));
}

// A create token's workspaces survive a restart of the API, in their order; a record without
// them (minted before tokens carried workspaces) loads as it was, without workspaces (its
// creates are then refused: http_scope_test's LegacyCreateTokenMayNotCreate).
TEST_F(TokenStoreTest, WorkspacesSurviveAReopen) {
  std::string id;
  {
    TokenStore store = Open();
    TokenScope scope = OwnerScope(static_cast<Rights>(Right::kCreate), {"claude"});
    scope.workspaces = {"/srv/ws/ci", "/srv/ws/ci-b"};
    auto m = store.Mint(scope, 60, "admin", kNow);
    ASSERT_TRUE(m) << m.error().ToString();
    id = m->record.id;
  }
  const std::string text = ReadFile(path_);
  EXPECT_NE(text.find(R"("workspaces":["/srv/ws/ci","/srv/ws/ci-b"])"), std::string::npos) << text;
  TokenStore again = Open();
  const TokenRecord* r = nullptr;
  ASSERT_EQ(again.Lookup(id, kNow, &r), TokenVerdict::kValid);
  EXPECT_EQ(r->scope.workspaces, (std::vector<std::string>{"/srv/ws/ci", "/srv/ws/ci-b"}));

  // The earlier record form, without the member.
  json doc = json::parse(text);
  doc["tokens"][0].erase("workspaces");
  auto legacy = TokenStore::Parse(doc.dump());
  ASSERT_TRUE(legacy) << legacy.error().ToString();
  EXPECT_TRUE(legacy->at(id).scope.workspaces.empty());
  EXPECT_TRUE(legacy->at(id).scope.Has(Right::kCreate));
  // A malformed workspace in the file is a start error, as any damage is.
  doc["tokens"][0]["workspaces"] = {"/srv/ws/../etc"};
  EXPECT_FALSE(TokenStore::Parse(doc.dump()));
  doc["tokens"][0]["workspaces"] = "/srv/ws/ci";
  EXPECT_FALSE(TokenStore::Parse(doc.dump()));
}

}  // namespace
}  // namespace mp::http

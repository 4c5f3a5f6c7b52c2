// A policy's `network` (issue 14): the string forms "none" and "host", the object form
// {"mode": ..., "allow": [...]}, and the allow patterns checked at load with errors that name
// the entry. Runs as any user; pure parsing.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "supervisor/policy.h"

namespace mp::supervisor {
namespace {

constexpr char kFile[] = "/p/net.json";

std::string Doc(const std::string& network) {
  return R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},
             "workspace_roots": ["/srv/ws"], "network": )" +
         network + "}";
}

std::vector<std::string> Errors(const std::string& network) {
  return ParsePolicy(kFile, Doc(network)).errors;
}

std::shared_ptr<const Policy> MustParse(const std::string& network) {
  PolicyLoad load = ParsePolicy(kFile, Doc(network));
  EXPECT_TRUE(load.errors.empty()) << ::testing::PrintToString(load.errors);
  return load.policy;
}

std::string E(const std::string& pointer_and_reason) {
  return std::string(kFile) + ":" + pointer_and_reason;
}

TEST(PolicyNetworkTest, StringFormsKeepTheirMeaning) {
  auto none = MustParse(R"("none")");
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(none->network, sandbox::NetworkMode::kNone);
  EXPECT_TRUE(none->network_allow.rules().empty());
  auto host = MustParse(R"("host")");
  ASSERT_NE(host, nullptr);
  EXPECT_EQ(host->network, sandbox::NetworkMode::kHost);
}

TEST(PolicyNetworkTest, ObjectFormWithEveryMode) {
  auto none = MustParse(R"({"mode": "none"})");
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(none->network, sandbox::NetworkMode::kNone);
  auto host = MustParse(R"({"mode": "host"})");
  ASSERT_NE(host, nullptr);
  EXPECT_EQ(host->network, sandbox::NetworkMode::kHost);
  auto allow = MustParse(
      R"({"mode": "allowlist", "allow": ["API.Anthropic.com.:443", "*.githubusercontent.com:443",
                                        "10.0.0.5:5432", "[fd00::5]:443",
                                        "api.anthropic.com:443"]})");
  ASSERT_NE(allow, nullptr);
  EXPECT_EQ(allow->network, sandbox::NetworkMode::kAllowlist);
  std::vector<std::string> canonical;
  for (const auto& r : allow->network_allow.rules()) canonical.push_back(r.ToString());
  // Case and the trailing dot folded; the duplicate kept once.
  EXPECT_EQ(canonical,
            (std::vector<std::string>{"api.anthropic.com:443", "*.githubusercontent.com:443",
                                      "10.0.0.5:5432", "[fd00::5]:443"}));
  EXPECT_TRUE(allow->network_allow.Permits({"api.anthropic.com", false, 443}));
  EXPECT_FALSE(allow->network_allow.Permits({"api.anthropic.com", false, 80}));
  // "*.x.com" is not "x.com".
  EXPECT_FALSE(allow->network_allow.Permits({"githubusercontent.com", false, 443}));
  EXPECT_TRUE(allow->network_allow.Permits({"raw.githubusercontent.com", false, 443}));
}

TEST(PolicyNetworkTest, AnEmptyAllowListAllowsNothing) {
  auto p = MustParse(R"({"mode": "allowlist", "allow": []})");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->network, sandbox::NetworkMode::kAllowlist);
  EXPECT_FALSE(p->network_allow.PermitsName("example.com"));
}

TEST(PolicyNetworkTest, BadFormsGetTheirExactErrors) {
  EXPECT_EQ(Errors(R"("allowlist")"),
            std::vector<std::string>{
                E("/network: \"allowlist\" needs its list: write {\"mode\": \"allowlist\", "
                  "\"allow\": [\"api.example.com:443\", ...]}")});
  EXPECT_EQ(Errors(R"({"mode": "allowlist"})"),
            std::vector<std::string>{E("/network/allow: is required for \"mode\": \"allowlist\" "
                                       "(write [] to allow nothing)")});
  EXPECT_EQ(Errors(R"({"mode": "host", "allow": ["a.com:443"]})"),
            std::vector<std::string>{
                E("/network/allow: is only for \"mode\": \"allowlist\" (\"none\" reaches "
                  "nothing, \"host\" everything)")});
  EXPECT_EQ(Errors(R"({"allow": []})"),
            std::vector<std::string>{E("/network/mode: required field is missing")});
  EXPECT_EQ(Errors(R"({"mode": "bridge", "allow": []})"),
            std::vector<std::string>{
                E("/network/mode: expected one of \"none\", \"host\", \"allowlist\"; got "
                  "\"bridge\"")});
  EXPECT_EQ(Errors(R"({"mode": "none", "allowed": []})"),
            std::vector<std::string>{E("/network/allowed: unknown field (known: mode, allow)")});
  EXPECT_EQ(Errors(R"({"mode": "allowlist", "allow": "a.com:443"})"),
            std::vector<std::string>{E("/network/allow: expected array, got string")});
}

// Each bad pattern is reported at its index, all of them at once, and none is half-loaded.
TEST(PolicyNetworkTest, EveryBadPatternIsNamed) {
  const std::vector<std::string> errors = Errors(
      R"({"mode": "allowlist", "allow": ["*", "*:443", "a.com", "*.com:443", "a.*.com:443",
                                        "ok.com:443", "*.10.0.0.1:443", "a.com:0",
                                        "a.com:65536", "a b.com:443"]})");
  ASSERT_EQ(errors.size(), 9u) << ::testing::PrintToString(errors);
  const char* const pointers[] = {"/network/allow/0", "/network/allow/1", "/network/allow/2",
                                  "/network/allow/3", "/network/allow/4", "/network/allow/6",
                                  "/network/allow/7", "/network/allow/8", "/network/allow/9"};
  for (size_t i = 0; i < errors.size(); ++i) {
    EXPECT_EQ(errors[i].rfind(E(pointers[i]) + ": ", 0), 0u) << errors[i];
  }
  EXPECT_NE(errors[0].find("would allow every host"), std::string::npos) << errors[0];
  EXPECT_NE(errors[3].find("top-level domain"), std::string::npos) << errors[3];
  EXPECT_NE(errors[4].find("whole first label"), std::string::npos) << errors[4];
}

}  // namespace
}  // namespace mp::supervisor

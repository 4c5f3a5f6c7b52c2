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
  EXPECT_EQ(
      Errors(R"({"mode": "none", "allowed": []})"),
      std::vector<std::string>{E("/network/allowed: unknown field (known: mode, allow, gateway)")});
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

// `network.gateway`: model endpoints of the credential gateway, read and checked at load.
constexpr char kGateway[] =
    R"({"mode": "allowlist", "allow": [], "gateway": [
         {"base_url_env": "ANTHROPIC_BASE_URL", "key_env": "ANTHROPIC_API_KEY",
          "upstream": "https://API.Anthropic.com",
          "auth": {"header": "x-api-key", "secret": "anthropic-api-key"}},
         {"base_url_env": "OPENAI_BASE_URL", "upstream": "https://api.openai.com:8443/v1",
          "auth": {"header": "Authorization", "prefix": "Bearer ", "secret": "openai"}}]})";

TEST(PolicyNetworkTest, GatewayEndpointsAreRead) {
  auto p = MustParse(kGateway);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->gateway.size(), 2u);
  EXPECT_EQ(p->gateway[0].base_url_env, "ANTHROPIC_BASE_URL");
  EXPECT_EQ(p->gateway[0].key_env, "ANTHROPIC_API_KEY");
  EXPECT_EQ(p->gateway[0].upstream, "https://API.Anthropic.com");
  EXPECT_EQ(p->gateway[0].header, "x-api-key");
  EXPECT_EQ(p->gateway[0].prefix, "");
  EXPECT_EQ(p->gateway[0].secret, "anthropic-api-key");
  EXPECT_EQ(p->gateway[1].key_env, "");
  EXPECT_EQ(p->gateway[1].prefix, "Bearer ");
  EXPECT_EQ(p->gateway[1].header, "Authorization");
}

std::string GatewayWith(const std::string& endpoint) {
  return R"({"mode": "allowlist", "allow": [], "gateway": [)" + endpoint + "]}";
}

TEST(PolicyNetworkTest, BadGatewayEndpointsAreNamed) {
  const std::string ok_auth = R"("auth": {"header": "x-api-key", "secret": "k"})";
  // Only for an allowlist session, whose namespace the endpoints listen in.
  EXPECT_EQ(Errors(R"({"mode": "host", "gateway": []})"),
            std::vector<std::string>{
                E("/network/gateway: is only for \"mode\": \"allowlist\": its endpoints "
                  "listen in the session's own network namespace")});
  // The upstream is https only, and says where.
  auto e =
      Errors(GatewayWith(R"({"base_url_env": "B", "upstream": "http://a.com", )" + ok_auth + "}"));
  ASSERT_EQ(e.size(), 1u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0].rfind(E("/network/gateway/0/upstream: "), 0), 0u) << e[0];
  // The gateway's own fields cannot carry a credential.
  EXPECT_EQ(Errors(GatewayWith(R"({"base_url_env": "B", "upstream": "https://a.com",
                                   "auth": {"header": "Host", "secret": "k"}})")),
            std::vector<std::string>{
                E("/network/gateway/0/auth/header: \"Host\" cannot carry a credential (Host, "
                  "Content-Length, Transfer-Encoding and Connection are the gateway's)")});
  e = Errors(GatewayWith(R"({"base_url_env": "B", "upstream": "https://a.com",
                             "auth": {"header": "x api key", "secret": "k"}})"));
  ASSERT_EQ(e.size(), 1u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0].rfind(E("/network/gateway/0/auth/header: "), 0), 0u) << e[0];
  e = Errors(GatewayWith(R"({"base_url_env": "B", "upstream": "https://a.com",
                             "auth": {"header": "x", "prefix": "a\r\nb", "secret": "k"}})"));
  ASSERT_EQ(e.size(), 1u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0].rfind(E("/network/gateway/0/auth/prefix: "), 0), 0u) << e[0];
  // The secret is a file name in credentials_dir, nothing else.
  e = Errors(GatewayWith(R"({"base_url_env": "B", "upstream": "https://a.com",
                             "auth": {"header": "x", "secret": "../etc/shadow"}})"));
  ASSERT_EQ(e.size(), 1u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0].rfind(E("/network/gateway/0/auth/secret: "), 0), 0u) << e[0];
  // auth is required; unknown fields are named.
  EXPECT_EQ(Errors(GatewayWith(R"({"base_url_env": "B", "upstream": "https://a.com"})")),
            std::vector<std::string>{E("/network/gateway/0/auth: required field is missing")});
  e = Errors(GatewayWith(R"({"base_url_env": "B", "upstream": "https://a.com", "key": "x", )" +
                         ok_auth + "}"));
  ASSERT_EQ(e.size(), 1u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0].rfind(E("/network/gateway/0/key: unknown field"), 0), 0u) << e[0];
  // Two endpoints cannot set the same variable.
  e = Errors(GatewayWith(
      R"({"base_url_env": "B", "upstream": "https://a.com", )" + ok_auth +
      R"(}, {"base_url_env": "C", "key_env": "B", "upstream": "https://b.com", )" + ok_auth + "}"));
  ASSERT_EQ(e.size(), 1u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0], E("/network/gateway/1/key_env: \"B\" is already given by env.pass, env.set, "
                    "env.secrets, env.optional_secrets or network.gateway"));
}

// A request may not point the agent elsewhere: the names the gateway sets are not settable.
TEST(PolicyNetworkTest, RequestEnvCannotSetWhatTheGatewaySets) {
  PolicyLoad load = ParsePolicy(
      kFile,
      R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},
                 "workspace_roots": ["/srv/ws"], "network": )" +
          std::string(kGateway) +
          R"(, "request_env": {"allow": ["LANG", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"]}})");
  EXPECT_EQ(load.errors,
            (std::vector<std::string>{
                E("/request_env/allow/1: \"ANTHROPIC_BASE_URL\" is set by network.gateway (the "
                  "endpoint on the session's loopback, or its placeholder key); a request may "
                  "not set it"),
                E("/request_env/allow/2: \"ANTHROPIC_API_KEY\" is set by network.gateway (the "
                  "endpoint on the session's loopback, or its placeholder key); a request may "
                  "not set it")}));
  // An env source may not set them either.
  load = ParsePolicy(kFile, R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},
                 "workspace_roots": ["/srv/ws"], "network": )" +
                                std::string(kGateway) +
                                R"(, "env": {"set": {"OPENAI_BASE_URL": "https://evil"}}})");
  EXPECT_EQ(
      load.errors,
      (std::vector<std::string>{E("/env/set/OPENAI_BASE_URL: \"OPENAI_BASE_URL\" is already given "
                                  "by env.pass, env.set, env.secrets, env.optional_secrets or "
                                  "network.gateway")}));
}

// No policy lets a request redirect the session's traffic: proxy variables and API base URLs
// are refused in request_env.allow in any case, gateway or not (issue 14). Control: names
// that only look alike load.
TEST(PolicyNetworkTest, RequestEnvCannotNameAProxyOrABaseUrl) {
  PolicyLoad load =
      ParsePolicy(kFile, R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},
                 "workspace_roots": ["/srv/ws"], "network": "host", "request_env": {"allow":
                 ["HTTPS_PROXY", "no_proxy", "All_Proxy", "OPENAI_BASE_URL", "my_base_url",
                  "LANG", "PROXY", "BASE_URL", "X_PROXY_MODE", "BASE_URLS"]}})");
  const std::string why =
      " names a proxy or an API base URL: a request could send the session's traffic, and the "
      "credentials in it, elsewhere; set it in env.set, or reach a model API through "
      "network.gateway";
  EXPECT_EQ(load.errors,
            (std::vector<std::string>{E("/request_env/allow/0: \"HTTPS_PROXY\"" + why),
                                      E("/request_env/allow/1: \"no_proxy\"" + why),
                                      E("/request_env/allow/2: \"All_Proxy\"" + why),
                                      E("/request_env/allow/3: \"OPENAI_BASE_URL\"" + why),
                                      E("/request_env/allow/4: \"my_base_url\"" + why)}));
  load = ParsePolicy(kFile, R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},
                 "workspace_roots": ["/srv/ws"], "request_env": {"allow":
                 ["LANG", "PROXY", "BASE_URL", "X_PROXY_MODE", "BASE_URLS"]}})");
  EXPECT_TRUE(load.errors.empty()) << ::testing::PrintToString(load.errors);
}

}  // namespace
}  // namespace mp::supervisor

// `monkeyproof token create|ls|revoke` (src/cli/token_command.h): argument parsing with its
// usage errors, the POST /tokens body, the token table, and the message a revoked or expired
// token gets (with the plain 401 as the control).
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/format.h"
#include "cli/token_command.h"

namespace mp::cli {
namespace {

using nlohmann::json;

TokenCommand MustParse(const std::vector<std::string>& args) {
  ParseResult r = ParseArgs(args);
  if (const auto* err = std::get_if<UsageError>(&r)) {
    ADD_FAILURE() << "usage error: " << err->message;
    return {};
  }
  const auto* cmd = std::get_if<TokenCommand>(&std::get<Invocation>(r).command);
  if (cmd == nullptr) {
    ADD_FAILURE() << "not a token command";
    return {};
  }
  return *cmd;
}

std::string MustFail(const std::vector<std::string>& args) {
  ParseResult r = ParseArgs(args);
  const auto* err = std::get_if<UsageError>(&r);
  if (err == nullptr) {
    ADD_FAILURE() << "expected a usage error";
    return {};
  }
  EXPECT_EQ(err->command, "token");
  return err->message;
}

TEST(CliToken, CreateWithEveryOption) {
  const TokenCommand cmd =
      MustParse({"token", "create", "--owner", "ci", "--rights", "read,input,create,read",
                 "--preset", "claude", "--preset", "codex", "--workspace", "/srv/ws/ci",
                 "--workspace", "/srv/ws/ci2", "--ttl", "8h", "--json"});
  EXPECT_EQ(cmd.action, TokenCommand::Action::kCreate);
  EXPECT_EQ(cmd.sessions, "owner:ci");
  EXPECT_EQ(cmd.rights, (std::vector<std::string>{"read", "input", "create"}));
  EXPECT_EQ(cmd.presets, (std::vector<std::string>{"claude", "codex"}));
  EXPECT_EQ(cmd.workspaces, (std::vector<std::string>{"/srv/ws/ci", "/srv/ws/ci2"}));
  EXPECT_EQ(cmd.ttl_seconds, 8u * 3600);
  EXPECT_EQ(json::parse(MintBody(cmd)),
            json::parse(R"({"sessions":"owner:ci","rights":["read","input","create"],)"
                        R"("presets":["claude","codex"],"workspaces":["/srv/ws/ci","/srv/ws/ci2"],)"
                        R"("ttlSeconds":28800})"));

  const TokenCommand one =
      MustParse({"token", "create", "--session", "s-01AB", "--rights", "kill"});
  EXPECT_EQ(one.sessions, "session:s-01AB");
  EXPECT_EQ(one.ttl_seconds, 3600u);  // the default
  EXPECT_EQ(json::parse(MintBody(one)),
            json::parse(R"({"sessions":"session:s-01AB","rights":["kill"],"ttlSeconds":3600})"));
  EXPECT_EQ(MustParse({"token", "create", "--label", "team=red", "--rights", "read"}).sessions,
            "label:team=red");
}

TEST(CliToken, CreateRefusals) {
  EXPECT_NE(MustFail({"token", "create", "--rights", "read"}).find("needs a scope"),
            std::string::npos);
  EXPECT_NE(MustFail({"token", "create", "--owner", "a", "--label", "b", "--rights", "read"})
                .find("give one scope"),
            std::string::npos);
  EXPECT_NE(MustFail({"token", "create", "--owner", "a"}).find("needs --rights"),
            std::string::npos);
  EXPECT_NE(MustFail({"token", "create", "--owner", "a", "--rights", "read,admin"})
                .find("'admin' is not one"),
            std::string::npos);
  EXPECT_NE(MustFail({"token", "create", "--owner", "a", "--rights", "read,"}).find("'' is not"),
            std::string::npos);
  EXPECT_NE(MustFail({"token", "create", "--owner", "a", "--rights", "create", "--preset", "x"})
                .find("--workspace DIR"),
            std::string::npos);
  EXPECT_NE(MustFail({"token", "create", "--owner", "a", "--rights", "read", "--workspace", "/w"})
                .find("--workspace goes with the create right"),
            std::string::npos);
  for (const char* bad : {"w", "/", "/w/", "/w/../x", "/w//x", "/w/./x"}) {
    EXPECT_NE(MustFail({"token", "create", "--owner", "a", "--rights", "create", "--preset", "x",
                        "--workspace", bad})
                  .find("--workspace must be"),
              std::string::npos)
        << bad;
  }
  EXPECT_NE(MustFail({"token", "create", "--owner", "a", "--rights", "create"}).find("--preset"),
            std::string::npos);
  EXPECT_NE(MustFail({"token", "create", "--owner", "a", "--rights", "read", "--preset", "x"})
                .find("goes with the create right"),
            std::string::npos);
  for (const char* ttl : {"0", "1w", "h", "-5", "1.5h", "99999999999999999999d"}) {
    EXPECT_NE(MustFail({"token", "create", "--owner", "a", "--rights", "read", "--ttl", ttl})
                  .find("--ttl must be"),
              std::string::npos)
        << ttl;
  }
  EXPECT_NE(MustFail({"token", "create", "extra", "--owner", "a", "--rights", "read"})
                .find("options only"),
            std::string::npos);
}

TEST(CliToken, LsAndRevoke) {
  EXPECT_EQ(MustParse({"token", "ls"}).action, TokenCommand::Action::kList);
  const TokenCommand revoke =
      MustParse({"token", "revoke", "0123456789abcdef", "fedcba9876543210"});
  EXPECT_EQ(revoke.action, TokenCommand::Action::kRevoke);
  EXPECT_EQ(revoke.ids, (std::vector<std::string>{"0123456789abcdef", "fedcba9876543210"}));
  EXPECT_NE(MustFail({"token"}).find("needs an action"), std::string::npos);
  EXPECT_NE(MustFail({"token", "mint"}).find("unknown token action 'mint'"), std::string::npos);
  EXPECT_NE(MustFail({"token", "revoke"}).find("needs a token ID"), std::string::npos);
  // The token itself instead of its id: refused before it is sent anywhere.
  EXPECT_NE(MustFail({"token", "revoke", "mpt_0123456789abcdef_secret"}).find("not a token id"),
            std::string::npos);
  EXPECT_NE(MustFail({"token", "ls", "--owner", "x"}).find("option of token create"),
            std::string::npos);
  EXPECT_NE(MustFail({"token", "ls", "x"}).find("takes no arguments"), std::string::npos);
}

TEST(CliToken, Ttl) {
  EXPECT_EQ(ParseTtl("3600"), 3600u);
  EXPECT_EQ(ParseTtl("90s"), 90u);
  EXPECT_EQ(ParseTtl("30m"), 1800u);
  EXPECT_EQ(ParseTtl("7d"), 7u * 86400);
  EXPECT_FALSE(ParseTtl(""));
  EXPECT_FALSE(ParseTtl("0m"));
  EXPECT_FALSE(ParseTtl("m"));
}

TEST(CliToken, Table) {
  const int64_t now = *ParseIsoTimeMs("2026-12-06T12:00:00Z");
  const auto table = FormatTokenTable(
      R"({"enabled":true,"tokens":[
        {"id":"0123456789abcdef","sessions":"owner:ci","rights":["read","input"],"presets":[],
         "createdAt":"2026-12-06T11:00:00Z","expiresAt":"2026-12-06T13:00:00Z",
         "createdBy":"admin","revoked":false,"revokedAt":null},
        {"id":"fedcba9876543210","sessions":"label:x\u001b[2J","rights":["create"],
         "presets":["claude"],"workspaces":["/srv/ws/x"],"expiresAt":"2026-12-06T11:59:00Z","createdBy":"admin",
         "revoked":true,"revokedAt":"2026-12-06T11:30:00Z"}]})",
      now);
  ASSERT_TRUE(table) << table.error().ToString();
  EXPECT_EQ(*table,
            "ID                SESSIONS     RIGHTS      PRESETS  WORKSPACES  EXPIRES  CREATED-BY  "
            "STATUS\n"
            "0123456789abcdef  owner:ci     read,input  -        -           in 1h    admin       "
            "active\n"
            "fedcba9876543210  label:x?[2J  create      claude   /srv/ws/x   expired  admin       "
            "revoked\n");
  EXPECT_NE(FormatTokenTable(R"({"enabled":false,"tokens":[]})", now)->find("disabled"),
            std::string::npos);
  EXPECT_FALSE(FormatTokenTable("[]", now));
  EXPECT_FALSE(FormatTokenTable(R"({"enabled":true})", now));
}

TEST(CliToken, MintedSummaryNeverRepeatsTheToken) {
  const auto about = FormatMinted(
      R"({"id":"0123456789abcdef","token":"mpt_0123456789abcdef_SECRET","sessions":"owner:ci",)"
      R"("rights":["read"],"presets":[],"expiresAt":"2026-12-06T13:00:00Z"})");
  ASSERT_TRUE(about);
  EXPECT_NE(about->find("token 0123456789abcdef: sessions owner:ci, rights read"),
            std::string::npos)
      << *about;
  EXPECT_EQ(about->find("SECRET"), std::string::npos) << *about;
}

TEST(CliToken, RevokedAndExpiredTokensSaySo) {
  HttpResponse response;
  response.status = 401;
  response.body = R"({"error":"token revoked","code":"unauthorized"})";
  std::string text = FormatHttpError(response, "MONKEYPROOF_TOKEN_FILE (ci.token)");
  EXPECT_EQ(text.rfind("token revoked (unauthorized); this scoped token can no longer be used", 0),
            0u)
      << text;
  EXPECT_NE(text.find("monkeyproof token create"), std::string::npos) << text;
  EXPECT_NE(text.find("came from MONKEYPROOF_TOKEN_FILE (ci.token)"), std::string::npos) << text;
  response.body = R"({"error":"token expired; ask for a new one","code":"unauthorized"})";
  EXPECT_NE(FormatHttpError(response, "x").find("can no longer be used"), std::string::npos);
  // Control: a wrong token still gets the advice on where tokens come from.
  response.body = R"({"error":"Unauthorized","code":"unauthorized"})";
  text = FormatHttpError(response, "x");
  EXPECT_EQ(text.find("can no longer be used"), std::string::npos) << text;
  EXPECT_NE(text.find("check the token"), std::string::npos) << text;
}

}  // namespace
}  // namespace mp::cli

// The supervisor's audit log as a file (supervisor/audit_log.h): rotation by rename and
// Reopen() (SIGHUP) loses no line, while the copytruncate rotation it replaced does. Files in
// a mkdtemp directory; runs as any user.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "supervisor/audit_log.h"
#include "temp_dir.h"

namespace mp::supervisor {
namespace {

std::vector<nlohmann::json> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    out.push_back(nlohmann::json::parse(line, nullptr, false));
  }
  return out;
}

void WriteKill(AuditLog& log, const std::string& session) {
  log.Write({"kill", session, "admin", 1, 2, "api:10.0.0.1", "", "ok", {}});
}

std::vector<std::string> Sessions(const std::string& path) {
  std::vector<std::string> out;
  for (const auto& l : ReadLines(path)) {
    EXPECT_TRUE(l.is_object()) << path << ": a line that is not JSON";
    if (l.is_object()) out.push_back(l["session"]);
  }
  return out;
}

// Every line: the common members in a fixed order, then the action's own named members.
TEST(AuditLogFormatTest, NamedMembersInsteadOfFreeText) {
  const std::vector<std::string> labels = {"ci", "team:web"};
  const std::string line = AuditLog::Format(
      {"spawn",
       "s-1",
       "token:0123456789abcdef",
       42,
       999,
       "api:203.0.113.7",
       "127.0.0.1",
       "ok",
       {AuditField::String("preset", "claude"), AuditField::String("owner", "alice"),
        AuditField::Strings("labels", labels), AuditField::Number("bytes", 12),
        AuditField::Bool("already_ended", false)}},
      1'765'000'000'123);
  EXPECT_EQ(line,
            R"({"time":"2025-12-06T05:46:40.123Z","action":"spawn","session":"s-1",)"
            R"("principal":"token:0123456789abcdef","peer_pid":42,"peer_uid":999,)"
            R"("client":"api:203.0.113.7","via":"127.0.0.1","outcome":"ok","preset":"claude",)"
            R"("owner":"alice","labels":["ci","team:web"],"bytes":12,"already_ended":false})");
  const auto direct = nlohmann::json::parse(
      AuditLog::Format({"kill", "s-1", "", 1, 2, "api:10.0.0.1", "", "ok", {}}, 0));
  EXPECT_TRUE(direct["via"].is_null());  // a direct client: no proxy
  EXPECT_TRUE(direct["principal"].is_null());
}

// Owner, labels, route and client are outside input: whatever they hold, a line stays one JSON
// object whose members are the ones the code wrote.
TEST(AuditLogFormatTest, OutsideInputCannotForgeMembersOrLines) {
  const std::string inject = R"(x","action":"kill","principal":"admin","z":")";
  const std::vector<std::string> labels = {inject, "a\nb\"}\n{\"action\":\"kill\"}",
                                           std::string("nul\0byte", 8), "\xff\xfe\x80", "\u2028"};
  test::TempDir dir("audit-format");
  const std::string path = dir.path() + "/audit.log";
  auto log = AuditLog::Open(path);
  ASSERT_TRUE(log) << log.error().ToString();
  log->Write({"spawn",
              "s-1",
              "token:0123456789abcdef",
              42,
              999,
              "api:" + inject,
              inject,
              "ok",
              {AuditField::String("owner", inject + "\r\n"), AuditField::Strings("labels", labels),
               AuditField::String("route", "GET /\n")}});
  const auto lines = ReadLines(path);
  ASSERT_EQ(lines.size(), 1u) << "a value broke the line";
  const auto& l = lines[0];
  ASSERT_TRUE(l.is_object());
  EXPECT_EQ(l["action"], "spawn");
  EXPECT_EQ(l["principal"], "token:0123456789abcdef");
  EXPECT_FALSE(l.contains("z"));
  EXPECT_EQ(l["owner"], inject + "\r\n");
  EXPECT_EQ(l["client"], "api:" + inject);
  EXPECT_EQ(l["via"], inject);
  ASSERT_TRUE(l["labels"].is_array());
  ASSERT_EQ(l["labels"].size(), labels.size());
  EXPECT_EQ(l["labels"][0], inject);
  EXPECT_EQ(l["labels"][1], labels[1]);
}

// Control: the same values concatenated without escaping forge an action and break the line:
// the probe above is an injection, and the escaping is what stops it.
TEST(AuditLogFormatTest, ControlUnescapedValuesForgeMembers) {
  const std::string inject = R"(x","action":"kill","principal":"admin","z":")";
  const std::string naive = R"({"action":"spawn","owner":")" + inject + R"("})";
  const auto parsed = nlohmann::json::parse(naive, nullptr, false);
  ASSERT_TRUE(parsed.is_object());
  EXPECT_EQ(parsed["action"], "kill");  // nlohmann keeps the last duplicate
  EXPECT_EQ(parsed["principal"], "admin");
}

TEST(AuditLogRotationTest, RenameThenReopenWritesToTheNewFileAndLosesNothing) {
  test::TempDir dir("audit-rotate");
  const std::string path = dir.path() + "/audit.log";
  const std::string rotated = path + ".1";
  auto log = AuditLog::Open(path);
  ASSERT_TRUE(log) << log.error().ToString();
  WriteKill(*log, "s-before");
  // logrotate: rename, create the new file, then the postrotate reload (SIGHUP).
  ASSERT_EQ(std::rename(path.c_str(), rotated.c_str()), 0);
  { std::ofstream(path, std::ios::trunc); }
  WriteKill(*log, "s-between");  // after the rename, before the reload reached the daemon
  auto reopened = log->Reopen();
  ASSERT_TRUE(reopened) << reopened.error().ToString();
  WriteKill(*log, "s-after");
  EXPECT_EQ(Sessions(rotated), (std::vector<std::string>{"s-before", "s-between"}));
  EXPECT_EQ(Sessions(path), (std::vector<std::string>{"s-after"}));
}

TEST(AuditLogRotationTest, ReopenCreatesAMissingFile) {
  test::TempDir dir("audit-rotate");
  const std::string path = dir.path() + "/audit.log";
  auto log = AuditLog::Open(path);
  ASSERT_TRUE(log) << log.error().ToString();
  ASSERT_EQ(std::rename(path.c_str(), (path + ".1").c_str()), 0);  // no `create`
  ASSERT_TRUE(log->Reopen());
  WriteKill(*log, "s-after");
  EXPECT_EQ(Sessions(path), (std::vector<std::string>{"s-after"}));
}

TEST(AuditLogRotationTest, AFailedReopenKeepsWritingToTheOldFile) {
  test::TempDir dir("audit-rotate");
  const std::string path = dir.path() + "/audit.log";
  const std::string rotated = path + ".1";
  auto log = AuditLog::Open(path);
  ASSERT_TRUE(log) << log.error().ToString();
  ASSERT_EQ(std::rename(path.c_str(), rotated.c_str()), 0);
  ASSERT_EQ(::symlink("/nonexistent", path.c_str()), 0);  // O_NOFOLLOW refuses it
  auto reopened = log->Reopen();
  ASSERT_FALSE(reopened);
  EXPECT_NE(reopened.error().what.find(path), std::string::npos) << reopened.error().what;
  WriteKill(*log, "s-kept");
  EXPECT_EQ(Sessions(rotated), (std::vector<std::string>{"s-kept"}));
}

// Controls. Without the reopen every later line goes to the rotated file (which logrotate
// compresses and at last deletes) and the new file stays empty: the test above would fail.
TEST(AuditLogRotationTest, ControlWithoutReopenLinesMissTheNewFile) {
  test::TempDir dir("audit-rotate");
  const std::string path = dir.path() + "/audit.log";
  auto log = AuditLog::Open(path);
  ASSERT_TRUE(log) << log.error().ToString();
  ASSERT_EQ(std::rename(path.c_str(), (path + ".1").c_str()), 0);
  { std::ofstream(path, std::ios::trunc); }
  WriteKill(*log, "s-after");
  EXPECT_TRUE(Sessions(path).empty());
}

// copytruncate, the old configuration: a line written between logrotate's copy and its
// truncation is in neither file.
TEST(AuditLogRotationTest, ControlCopytruncateLosesALineWrittenDuringTheRotation) {
  test::TempDir dir("audit-rotate");
  const std::string path = dir.path() + "/audit.log";
  const std::string rotated = path + ".1";
  auto log = AuditLog::Open(path);
  ASSERT_TRUE(log) << log.error().ToString();
  WriteKill(*log, "s-before");
  {
    std::ifstream in(path, std::ios::binary);
    std::ofstream out(rotated, std::ios::binary);
    out << in.rdbuf();
  }
  WriteKill(*log, "s-lost");
  ASSERT_EQ(::truncate(path.c_str(), 0), 0);
  WriteKill(*log, "s-after");
  EXPECT_EQ(Sessions(rotated), (std::vector<std::string>{"s-before"}));
  EXPECT_EQ(Sessions(path), (std::vector<std::string>{"s-after"}));
}

}  // namespace
}  // namespace mp::supervisor

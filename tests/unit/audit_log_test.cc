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
  log.Write({"kill", session, "admin", 1, 2, "api:10.0.0.1", "ok", ""});
}

std::vector<std::string> Sessions(const std::string& path) {
  std::vector<std::string> out;
  for (const auto& l : ReadLines(path)) {
    EXPECT_TRUE(l.is_object()) << path << ": a line that is not JSON";
    if (l.is_object()) out.push_back(l["session"]);
  }
  return out;
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

// SessionStore: retention and expiry rules (pure), records written atomically and recovered
// (a running session becomes supervisor_restart), in a mkdtemp directory.
#include "supervisor/session_store.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace mp::supervisor {
namespace {

using std::chrono::milliseconds;

TEST(RetentionTest, OldestEndedGoFirstUntilTheCountHolds) {
  std::vector<RetentionEntry> e = {
      {"s-1", true, 10}, {"s-2", false, 0}, {"s-3", true, 10}, {"s-4", true, 10}};
  EXPECT_EQ(RetentionVictims(e, {2, 1000}), (std::vector<std::string>{"s-1"}));
  EXPECT_EQ(RetentionVictims(e, {0, 1000}), (std::vector<std::string>{"s-1", "s-3", "s-4"}));
  EXPECT_TRUE(RetentionVictims(e, {3, 1000}).empty());
}

TEST(RetentionTest, BytesLimitCountsHeldTranscriptsOfEndedSessionsOnly) {
  std::vector<RetentionEntry> e = {
      {"s-1", true, 600}, {"s-2", false, 5000}, {"s-3", true, 300}, {"s-4", true, 200}};
  // 1,100 ended bytes held: dropping s-1 leaves 500.
  EXPECT_EQ(RetentionVictims(e, {100, 500}), (std::vector<std::string>{"s-1"}));
  EXPECT_EQ(RetentionVictims(e, {100, 499}), (std::vector<std::string>{"s-1", "s-3"}));
  EXPECT_TRUE(RetentionVictims(e, {100, 1100}).empty());
}

TEST(ExpiryTest, DelayIsWhatIsLeftOfTheTtlAndNeverNegative) {
  EXPECT_EQ(ExpiryDelay(1000, milliseconds(500), 1200), milliseconds(300));
  EXPECT_EQ(ExpiryDelay(1000, milliseconds(500), 1500), milliseconds(0));
  EXPECT_EQ(ExpiryDelay(1000, milliseconds(500), 99999), milliseconds(0));
}

class SessionStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mp-store-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static wire::SessionInfo Info(const std::string& id, uint64_t created) {
    wire::SessionInfo i;
    i.id = id;
    i.state = wire::SessionState::kRunning;
    i.type = wire::SessionType::kExec;
    i.created_at_ms = created;
    i.command = "sh -lc true";
    i.cwd = "/";
    return i;
  }

  std::string dir_;
};

TEST_F(SessionStoreTest, RecoveryOrdersByCreationAndEndsRunningSessions) {
  SessionStore store(dir_);
  ASSERT_TRUE(store.Recover());  // creates sessions/
  auto ended = Info("s-Ended", 2000);
  ended.state = wire::SessionState::kExited;
  wire::EndRecord end;
  end.reason = wire::EndReason::kExit;
  end.exit_code = 3;
  end.ended_at_ms = 2500;
  ended.end = end;
  for (const auto& i : {ended, Info("s-Running", 1000)}) {
    ASSERT_TRUE(store.CreateSessionDir(i.id));
    store.Write(i);
  }
  EXPECT_FALSE(store.CreateSessionDir("s-Ended")) << "an existing directory must be refused";
  // Garbage is left on disk, and a name that is no session id is not read.
  ASSERT_TRUE(store.CreateSessionDir("s-Garbage"));
  std::ofstream(store.SessionDir("s-Garbage") + "/record.json") << "{not json";
  ::mkdir((dir_ + "/sessions/notanid").c_str(), 0700);

  auto recovered = store.Recover();
  ASSERT_TRUE(recovered) << recovered.error().ToString();
  ASSERT_EQ(recovered->size(), 2u);
  EXPECT_EQ((*recovered)[0].info.id, "s-Running");
  EXPECT_EQ((*recovered)[0].info.state, wire::SessionState::kKilled);
  ASSERT_TRUE((*recovered)[0].info.end.has_value());
  EXPECT_EQ((*recovered)[0].info.end->reason, wire::EndReason::kSupervisorRestart);
  EXPECT_EQ((*recovered)[1].info.id, "s-Ended");
  EXPECT_EQ((*recovered)[1].info.end->exit_code, 3);
  EXPECT_TRUE(std::filesystem::exists(store.SessionDir("s-Garbage") + "/record.json"));

  // The restart's verdict was written back: a second recovery reads it unchanged.
  auto again = store.Recover();
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)[0].info.end->ended_at_ms, (*recovered)[0].info.end->ended_at_ms);

  store.Remove("s-Running", nullptr);
  EXPECT_FALSE(std::filesystem::exists(store.SessionDir("s-Running")));
  EXPECT_FALSE(std::filesystem::exists(store.SessionDir("s-Running") + "/record.json.tmp"));
}

}  // namespace
}  // namespace mp::supervisor

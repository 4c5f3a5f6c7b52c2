// Adoption (supervisor/adoption.h): the adoption record's round trip and its refusals (another
// format, a damaged file, a missing one), the stored fds grouped by session, a pidfd's pid;
// and SessionStore::Recover leaving the sessions to adopt running. A mkdtemp directory, pipes
// and this process's own pidfd; no sandbox.
#include "supervisor/adoption.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "common/messages.h"
#include "common/wire.h"
#include "supervisor/session_store.h"

namespace mp::supervisor {
namespace {

class AdoptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mp-adoption-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

AdoptionRecord Sample() {
  AdoptionRecord r;
  r.init_pid = 4242;
  r.running_since_ms = 1700000000123;
  r.pty = true;
  r.policy_name = "claude";
  r.deadlines.wall_seconds = 3600;
  r.deadlines.idle_seconds = 600;
  r.output.ring_bytes = 1 << 16;
  r.output.transcript_max_bytes = 1 << 24;
  r.output.max_rate_bytes_per_second = 1000;
  r.output.max_rate_window_seconds = 5;
  r.output.on_flood = common::FloodAction::kKill;
  return r;
}

TEST_F(AdoptionTest, RecordRoundTripsThroughItsFile) {
  ASSERT_TRUE(WriteAdoptionRecord(dir_, Sample()));
  auto back = ReadAdoptionRecord(dir_);
  ASSERT_TRUE(back) << back.error().ToString();
  const AdoptionRecord want = Sample();
  EXPECT_EQ(back->format, kAdoptionFormat);
  EXPECT_EQ(back->init_pid, want.init_pid);
  EXPECT_EQ(back->running_since_ms, want.running_since_ms);
  EXPECT_TRUE(back->pty);
  EXPECT_EQ(back->policy_name, "claude");
  EXPECT_EQ(back->deadlines.wall_seconds, 3600u);
  EXPECT_EQ(back->deadlines.idle_seconds, 600u);
  EXPECT_EQ(back->output.ring_bytes, want.output.ring_bytes);
  EXPECT_EQ(back->output.transcript_max_bytes, want.output.transcript_max_bytes);
  EXPECT_EQ(back->output.max_rate_bytes_per_second, 1000u);
  EXPECT_EQ(back->output.max_rate_window_seconds, 5u);
  EXPECT_EQ(back->output.on_flood, common::FloodAction::kKill);
  EXPECT_FALSE(std::filesystem::exists(AdoptionRecordPath(dir_) + ".tmp"));
}

// An allowlist session's allow list survives the record (the re-hand after a restart uses it);
// the other modes' records carry none, and a record without it reads as none.
TEST_F(AdoptionTest, TheEgressAllowListRoundTrips) {
  AdoptionRecord r = Sample();
  r.egress_allow = std::vector<std::string>{"example.com:443", "*.example.org:80"};
  auto back = AdoptionRecordFromJson(AdoptionRecordToJson(r));
  ASSERT_TRUE(back) << back.error().what;
  EXPECT_EQ(back->egress_allow, r.egress_allow);
  r.egress_allow = std::vector<std::string>{};
  back = AdoptionRecordFromJson(AdoptionRecordToJson(r));
  ASSERT_TRUE(back && back->egress_allow);
  EXPECT_TRUE(back->egress_allow->empty()) << "an empty list is not the absence of one";
  const std::string plain = AdoptionRecordToJson(Sample());
  EXPECT_EQ(plain.find("egress_allow"), std::string::npos) << plain;
  back = AdoptionRecordFromJson(plain);
  ASSERT_TRUE(back);
  EXPECT_FALSE(back->egress_allow);
}

// The credential gateway's endpoints survive the record without their secrets: the next
// supervisor reads those again.
TEST_F(AdoptionTest, TheGatewayEndpointsRoundTripWithoutSecrets) {
  AdoptionRecord r = Sample();
  r.egress_allow = std::vector<std::string>{};
  r.egress_gateway = {
      {"ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "https://api.anthropic.com", "x-api-key", "",
       "anthropic-api-key"},
      {"OPENAI_BASE_URL", "", "https://api.openai.com/v1", "authorization", "Bearer ", "openai"}};
  const std::string text = AdoptionRecordToJson(r);
  auto back = AdoptionRecordFromJson(text);
  ASSERT_TRUE(back) << back.error().what;
  EXPECT_EQ(back->egress_gateway, r.egress_gateway);
  back = AdoptionRecordFromJson(AdoptionRecordToJson(Sample()));
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->egress_gateway.empty());
}

TEST_F(AdoptionTest, AnotherFormatIsRefusedNamingBoth) {
  AdoptionRecord r = Sample();
  r.format = kAdoptionFormat + 1;
  auto back = AdoptionRecordFromJson(AdoptionRecordToJson(r));
  ASSERT_FALSE(back);
  EXPECT_NE(back.error().what.find("format " + std::to_string(kAdoptionFormat + 1)),
            std::string::npos)
      << back.error().what;
  EXPECT_NE(back.error().what.find("reads format " + std::to_string(kAdoptionFormat)),
            std::string::npos)
      << back.error().what;
}

TEST_F(AdoptionTest, DamagedOrMissingRecordsAreRefused) {
  EXPECT_FALSE(ReadAdoptionRecord(dir_)) << "no file";
  std::ofstream(AdoptionRecordPath(dir_)) << "{\"format\":1,";
  auto torn = ReadAdoptionRecord(dir_);
  ASSERT_FALSE(torn);
  EXPECT_NE(torn.error().what.find("unreadable"), std::string::npos) << torn.error().what;
  std::string text = AdoptionRecordToJson(Sample());
  text.replace(text.find("\"kill\""), 6, "\"explode\"");
  EXPECT_FALSE(AdoptionRecordFromJson(text));
  AdoptionRecord no_pid = Sample();
  no_pid.init_pid = 0;
  EXPECT_FALSE(AdoptionRecordFromJson(AdoptionRecordToJson(no_pid)));
  // The control: the same text with its values intact is read.
  EXPECT_TRUE(AdoptionRecordFromJson(AdoptionRecordToJson(Sample())));
}

TEST_F(AdoptionTest, StoredFdsAreGroupedBySessionAndOthersLeftToTheCaller) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const int dup1 = ::dup(p[0]);
  const int other = ::dup(p[0]);
  std::vector<sd::ListenedFd> listened = {
      {p[0], "s-Abc.out"}, {p[1], "s-Abc.in"}, {dup1, "s-Abc.out"}, {other, "unknown"}};
  std::vector<sd::ListenedFd> foreign;
  auto grouped = GroupStoredFds(listened, &foreign);
  ASSERT_EQ(grouped.size(), 1u);
  const StoredFds& s = grouped.at("s-Abc");
  EXPECT_EQ(s.fds.size(), 2u);
  EXPECT_EQ(s.fds.at(sd::FdKind::kOut).get(), p[0]);
  EXPECT_EQ(s.fds.at(sd::FdKind::kIn).get(), p[1]);
  EXPECT_EQ(s.names, (std::vector<std::string>{"s-Abc.out", "s-Abc.in"}));
  ASSERT_EQ(foreign.size(), 1u);
  EXPECT_EQ(foreign[0].fd, other);
  EXPECT_EQ(::fcntl(dup1, F_GETFD), -1) << "the duplicate was not closed";
  ::close(other);
}

TEST_F(AdoptionTest, APidfdNamesItsPid) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0));
  ASSERT_GE(fd, 0);
  auto pid = PidOfPidfd(fd);
  ASSERT_TRUE(pid) << pid.error().ToString();
  EXPECT_EQ(*pid, ::getpid());
  ::close(fd);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  EXPECT_FALSE(PidOfPidfd(p[0])) << "a pipe is no pidfd";
  ::close(p[0]);
  ::close(p[1]);
}

TEST_F(AdoptionTest, RecoveryLeavesSessionsToAdoptRunning) {
  SessionStore store(dir_);
  ASSERT_TRUE(store.Recover());
  for (const std::string id : {"s-Adopt", "s-Other"}) {
    wire::SessionInfo i;
    i.id = id;
    i.state = wire::SessionState::kRunning;
    i.created_at_ms = id == "s-Adopt" ? 1 : 2;
    i.command = "sh";
    i.cwd = "/";
    i.supervisor_restarts = 2;
    ASSERT_TRUE(store.CreateSessionDir(id));
    store.Write(i);
  }
  auto recovered = store.Recover({"s-Adopt"});
  ASSERT_TRUE(recovered);
  ASSERT_EQ(recovered->size(), 2u);
  EXPECT_FALSE((*recovered)[0].info.end) << "a session to adopt was ended";
  EXPECT_EQ((*recovered)[0].info.supervisor_restarts, 2u);
  ASSERT_TRUE((*recovered)[1].info.end);
  EXPECT_EQ((*recovered)[1].info.end->reason, wire::EndReason::kSupervisorRestart);
  wire::SessionInfo failed = (*recovered)[0].info;
  SessionStore::EndAsRestart(failed, "why");
  EXPECT_EQ(failed.state, wire::SessionState::kKilled);
  EXPECT_EQ(failed.end->detail, "why");
  // Removing a session removes its adoption record too (else its directory would stay).
  ASSERT_TRUE(WriteAdoptionRecord(store.SessionDir("s-Adopt"), Sample()));
  store.Remove("s-Adopt", nullptr);
  EXPECT_FALSE(std::filesystem::exists(store.SessionDir("s-Adopt")));
}

// supervisor_restarts and the health counters on the wire: absent means 0 (records and
// supervisors from before re-adoption), a value travels in records and responses.
TEST(AdoptionWireTest, RestartsAndCountersTravel) {
  wire::SessionInfo s;
  s.id = "s-Wire";
  s.command = "sh";
  s.cwd = "/";
  s.created_at_ms = 1;
  const std::string plain = wire::SessionInfoToJson(s);
  EXPECT_EQ(plain.find("supervisor_restarts"), std::string::npos) << plain;
  auto back = wire::SessionInfoFromJson(plain);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->supervisor_restarts, 0u);
  s.supervisor_restarts = 3;
  back = wire::SessionInfoFromJson(wire::SessionInfoToJson(s));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->supervisor_restarts, 3u);

  wire::HealthInfo h;
  h.version = "1";
  h.sessions_readopted = 5;
  h.readoption_failures = 2;
  auto frame = wire::EncodeResponse({7, h});
  ASSERT_TRUE(frame);
  auto view = wire::DecodeFrame(*frame);
  ASSERT_TRUE(view);
  auto resp = wire::DecodeResponse(*view);
  ASSERT_TRUE(resp) << resp.error().ToString();
  EXPECT_EQ(std::get<wire::HealthInfo>(resp->body).sessions_readopted, 5u);
  EXPECT_EQ(std::get<wire::HealthInfo>(resp->body).readoption_failures, 2u);
}

}  // namespace
}  // namespace mp::supervisor

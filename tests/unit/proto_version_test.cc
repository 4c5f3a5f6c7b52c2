// What each control-protocol version carries (common/proto_version.h): the version a request
// needs and the member that needs it, and fitting a request to version 1 (optional members
// dropped, the new audit actions not sendable) so that it then needs nothing newer. Each
// version-2 member and action is listed; control: the same requests without them need 1.
#include "common/proto_version.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mp::wire {
namespace {

template <typename R>
R Acting(std::string client, std::string via) {
  R r{};
  r.session = "s-abc";
  r.principal = "admin";
  r.client = std::move(client);
  r.via = std::move(via);
  return r;
}

std::vector<RequestBody> ActingRequests(const std::string& client, const std::string& via) {
  return {Acting<KillRequest>(client, via), Acting<SignalRequest>(client, via),
          Acting<StdinRequest>(client, via), Acting<CloseStdinRequest>(client, via),
          Acting<ResizeRequest>(client, via)};
}

AuditRequest Audit(AuditAction action, std::string via = {}) {
  AuditRequest a;
  a.action = action;
  a.principal = "admin";
  a.client = "api:127.0.0.1";
  a.via = std::move(via);
  return a;
}

TEST(ProtoVersion, TheConstantsNameFiveVersions) {
  EXPECT_EQ(kProtoVersion, 5u);
  EXPECT_EQ(kMinProtoVersion, 1u);
}

TEST(ProtoVersion, ClientAndViaOnActingRequestsNeedVersion2) {
  for (const RequestBody& body : ActingRequests("api:203.0.113.9", "")) {
    const ProtoNeed need = RequiredProto(body);
    EXPECT_EQ(need.version, 2u) << body.index();
    EXPECT_EQ(need.field, "/client");
    EXPECT_EQ(need.what.rfind("/client: ", 0), 0u) << need.what;
  }
  for (const RequestBody& body : ActingRequests("", "127.0.0.1")) {
    EXPECT_EQ(RequiredProto(body).field, "/via") << body.index();
  }
  // Control: a principal alone is version 1's.
  for (const RequestBody& body : ActingRequests("", "")) {
    EXPECT_EQ(RequiredProto(body).version, 1u) << body.index();
    EXPECT_EQ(RequiredProto(body).field, "");
  }
}

TEST(ProtoVersion, ViaOnSpawnAndTokenAuditsAndTheNewActionsNeedVersion2) {
  SpawnRequest spawn;
  spawn.task = "idle";
  spawn.client = "api:203.0.113.9";
  EXPECT_EQ(RequiredProto(spawn).version, 1u);  // client has always been spawn's
  spawn.via = "127.0.0.1";
  EXPECT_EQ(RequiredProto(spawn).field, "/via");
  EXPECT_EQ(RequiredProto(Audit(AuditAction::kTokenCreate)).version, 1u);
  EXPECT_EQ(RequiredProto(Audit(AuditAction::kTokenRevoke, "127.0.0.1")).field, "/via");
  for (auto action : {AuditAction::kRead, AuditAction::kAuthFailed, AuditAction::kRateLimited,
                      AuditAction::kSuppressed}) {
    const ProtoNeed need = RequiredProto(Audit(action));
    EXPECT_EQ(need.version, 2u);
    EXPECT_EQ(need.field, "/action");
    EXPECT_NE(need.what.find(ToString(action)), std::string::npos) << need.what;
    EXPECT_FALSE(AuditActionIn(action, 1));
    EXPECT_TRUE(AuditActionIn(action, 2));
  }
  EXPECT_TRUE(AuditActionIn(AuditAction::kTokenCreate, 1));
}

TEST(ProtoVersion, FittingToVersion1DropsWhatItLacksAndKeepsTheRest) {
  std::vector<RequestBody> all = ActingRequests("api:203.0.113.9", "127.0.0.1");
  SpawnRequest spawn;
  spawn.task = "idle";
  spawn.client = "api:203.0.113.9";
  spawn.via = "127.0.0.1";
  spawn.principal = "admin";
  all.emplace_back(spawn);
  all.emplace_back(Audit(AuditAction::kTokenCreate, "127.0.0.1"));
  for (RequestBody& body : all) {
    RequestBody as_is = body;
    ASSERT_TRUE(FitToProto(as_is, 2));
    EXPECT_EQ(as_is, body);  // version 2 carries it whole
    ASSERT_TRUE(FitToProto(body, 1));
    EXPECT_EQ(RequiredProto(body).version, 1u) << body.index();
  }
  const auto& fitted_spawn = std::get<SpawnRequest>(all[5]);
  EXPECT_EQ(fitted_spawn.client, "api:203.0.113.9");
  EXPECT_EQ(fitted_spawn.principal, "admin");
  EXPECT_EQ(std::get<KillRequest>(all[0]).principal, "admin");
  EXPECT_EQ(std::get<AuditRequest>(all[6]).client, "api:127.0.0.1");

  RequestBody read = Audit(AuditAction::kRead, "127.0.0.1");
  const RequestBody before = read;
  EXPECT_FALSE(FitToProto(read, 1));
  EXPECT_EQ(read, before);
  EXPECT_TRUE(FitToProto(read, 2));
  EXPECT_NE(MissingInProto(1).find("no read, auth_failed"), std::string::npos);
  EXPECT_NE(MissingInProto(1).find("insufficient_storage"), std::string::npos);
  EXPECT_EQ(MissingInProto(2).find("auth_failed"), std::string::npos) << MissingInProto(2);
  EXPECT_NE(MissingInProto(2).find("insufficient_storage"), std::string::npos);
  EXPECT_NE(MissingInProto(3).find("workspaces"), std::string::npos) << MissingInProto(3);
  EXPECT_EQ(MissingInProto(3).find("insufficient_storage"), std::string::npos);
  EXPECT_EQ(MissingInProto(4), "sessions and /metrics show no egress counters");
  EXPECT_EQ(MissingInProto(5), "");
}

// A spawn limited to workspaces has no form before version 4: it is never sent (dropping the
// limit would run it anywhere), and a version-3 connection's supervisor refuses it.
TEST(ProtoVersion, CwdWithinNeedsVersion4AndIsNeverDropped) {
  SpawnRequest spawn;
  spawn.task = "t";
  spawn.client = "api:127.0.0.1";
  spawn.principal = "token:0123456789abcdef";
  spawn.cwd_within = {"/srv/ws/ci"};
  const ProtoNeed need = RequiredProto(spawn);
  EXPECT_EQ(need.version, 4u);
  EXPECT_EQ(need.field, "/cwd_within");
  EXPECT_EQ(need.what.rfind("/cwd_within: ", 0), 0u) << need.what;
  for (uint32_t proto : {1u, 2u, 3u}) {
    RequestBody body = spawn;
    EXPECT_FALSE(FitToProto(body, proto)) << proto;
    EXPECT_EQ(std::get<SpawnRequest>(body), spawn) << proto;
  }
  RequestBody body = spawn;
  EXPECT_TRUE(FitToProto(body, 4));
  EXPECT_EQ(std::get<SpawnRequest>(body).cwd_within, spawn.cwd_within);
  // Control: without cwd_within a spawn still goes to any version.
  spawn.cwd_within.clear();
  EXPECT_EQ(RequiredProto(spawn).version, 1u);
  for (uint32_t proto : {1u, 2u, 3u}) {
    RequestBody plain = spawn;
    EXPECT_TRUE(FitToProto(plain, proto)) << proto;
  }
}

TEST(ProtoVersion, InsufficientStorageIsCapacityBeforeVersion3) {
  EXPECT_EQ(ErrorCodeIn(ErrorCode::kInsufficientStorage, 1), ErrorCode::kCapacity);
  EXPECT_EQ(ErrorCodeIn(ErrorCode::kInsufficientStorage, 2), ErrorCode::kCapacity);
  EXPECT_EQ(ErrorCodeIn(ErrorCode::kInsufficientStorage, 3), ErrorCode::kInsufficientStorage);
  // Every other code is in every version.
  for (size_t i = 0; i < kErrorCodeNames.size(); ++i) {
    const auto code = static_cast<ErrorCode>(i);
    if (code == ErrorCode::kInsufficientStorage) continue;
    EXPECT_EQ(ErrorCodeIn(code, 1), code) << kErrorCodeNames[i];
  }
}

}  // namespace
}  // namespace mp::wire

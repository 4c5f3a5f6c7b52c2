#include "common/proto_version.h"

#include <string_view>
#include <type_traits>
#include <variant>

namespace mp::wire {
namespace {

// The first version with `client`/`via` on acting requests and the read/refusal audits.
constexpr uint32_t kAuditV2 = 2;
// The first version with a spawn's `cwd_within` (a scoped token's workspaces).
constexpr uint32_t kCwdWithinV4 = 4;
// The first version with egress counters in SessionInfo and HealthInfo.
constexpr uint32_t kEgressV5 = 5;

ProtoNeed Needs(uint32_t version, std::string field, const std::string& reason) {
  return {version, field, field + ": " + reason};
}

ProtoNeed MemberNeed(std::string_view member) {
  return Needs(kAuditV2, "/" + std::string(member),
               "unknown field in protocol version 1 (this connection's hello); it needs "
               "version 2");
}

// kill, signal, stdin, close_stdin, resize: `client` and `via` are version 2's.
template <typename R>
constexpr bool kIsActing = std::is_same_v<R, KillRequest> || std::is_same_v<R, SignalRequest> ||
                           std::is_same_v<R, StdinRequest> ||
                           std::is_same_v<R, CloseStdinRequest> || std::is_same_v<R, ResizeRequest>;

}  // namespace

void FitResponseToProto(Response& response, uint32_t proto) {
  if (proto >= kEgressV5) return;
  if (auto* info = std::get_if<SessionInfo>(&response.body)) info->egress.reset();
  if (auto* list = std::get_if<SessionList>(&response.body)) {
    for (SessionInfo& info : list->sessions) info.egress.reset();
  }
  if (auto* health = std::get_if<HealthInfo>(&response.body)) health->egress.reset();
}

ErrorCode ErrorCodeIn(ErrorCode code, uint32_t proto) {
  if (code == ErrorCode::kInsufficientStorage && proto < 3) return ErrorCode::kCapacity;
  return code;
}

bool AuditActionIn(AuditAction action, uint32_t proto) {
  if (proto >= kAuditV2) return true;
  return action == AuditAction::kTokenCreate || action == AuditAction::kTokenRevoke;
}

ProtoNeed RequiredProto(const RequestBody& body) {
  return std::visit(
      []([[maybe_unused]] const auto& r) -> ProtoNeed {
        using R = std::decay_t<decltype(r)>;
        if constexpr (kIsActing<R>) {
          if (!r.client.empty()) return MemberNeed("client");
          if (!r.via.empty()) return MemberNeed("via");
        } else if constexpr (std::is_same_v<R, SpawnRequest>) {
          if (!r.cwd_within.empty()) {
            return Needs(kCwdWithinV4, "/cwd_within",
                         "unknown field in protocol version " + std::to_string(kCwdWithinV4 - 1) +
                             " or older (this connection's hello); it needs version 4");
          }
          if (!r.via.empty()) return MemberNeed("via");
        } else if constexpr (std::is_same_v<R, AuditRequest>) {
          if (!AuditActionIn(r.action, kMinProtoVersion)) {
            return Needs(kAuditV2, "/action",
                         "\"" + std::string(ToString(r.action)) +
                             "\" is not an audit action of protocol version 1 (this "
                             "connection's hello); it needs version 2");
          }
          if (!r.via.empty()) return MemberNeed("via");
        }
        return {};
      },
      body);
}

bool FitToProto(RequestBody& body, uint32_t proto) {
  // A spawn limited to workspaces has no form before version 4: dropping the limit would run
  // it unrestricted, so it is never sent.
  if (const auto* spawn = std::get_if<SpawnRequest>(&body);
      spawn != nullptr && !spawn->cwd_within.empty() && proto < kCwdWithinV4) {
    return false;
  }
  if (proto >= kAuditV2) return true;
  return std::visit(
      [](auto& r) -> bool {
        using R = std::decay_t<decltype(r)>;
        if constexpr (kIsActing<R>) {
          r.client.clear();
          r.via.clear();
        } else if constexpr (std::is_same_v<R, SpawnRequest>) {
          r.via.clear();
        } else if constexpr (std::is_same_v<R, AuditRequest>) {
          if (!AuditActionIn(r.action, kMinProtoVersion)) return false;
          r.via.clear();
        }
        return true;
      },
      body);
}

std::string MissingInProto(uint32_t proto) {
  std::string missing;
  if (proto < kAuditV2) {
    missing =
        "its audit log gets no read, auth_failed, rate_limited or audit_suppressed lines; kill, "
        "signal, stdin, close_stdin and resize lines name the API connection as client, not the "
        "caller; no via (trusted proxy) on any line; ";
  }
  if (proto < 3) {
    missing +=
        "a spawn on a full state file system is answered as capacity (429), not "
        "insufficient_storage (507); ";
  }
  if (proto < kCwdWithinV4) {
    missing +=
        "scoped tokens limited to workspaces cannot create sessions (the supervisor cannot "
        "enforce the limit; such creates are refused with 503); ";
  }
  if (proto < kEgressV5) {
    missing += "sessions and /metrics show no egress counters";
  }
  return missing;
}

}  // namespace mp::wire

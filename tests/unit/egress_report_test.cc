// Verdict reports (issue 14): monkeyproof-egress's record of one verdict, decoded by the root
// supervisor (egress/verdict_report.h); what the supervisor makes of one: the session's and the
// totals' counters and the audit line (supervisor/session_manager.h).
#include <gtest/gtest.h>

#include <string>

#include "common/messages.h"
#include "common/proto_version.h"
#include "egress/verdict_report.h"
#include "supervisor/audit_log.h"
#include "supervisor/session_manager.h"

namespace mp {
namespace {

using egress::DecodeVerdictReport;
using egress::EncodeVerdictReport;
using egress::VerdictKind;
using egress::VerdictReport;

VerdictReport Allowed() {
  VerdictReport r;
  r.kind = VerdictKind::kTransparent;
  r.allowed = true;
  r.port = 443;
  r.bytes_up = 1234;
  r.bytes_down = (1ull << 40) + 7;
  r.dropped = 3;
  r.session = "s-abc_1";
  r.name = "api.example.com";
  return r;
}

VerdictReport Denied() {
  VerdictReport r;
  r.kind = VerdictKind::kProxy;
  r.port = 22;
  r.session = "s-abc_1";
  r.name = "evil.example";
  r.reason = "not in this session's allowlist";
  return r;
}

void ExpectSame(const VerdictReport& a, const VerdictReport& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.allowed, b.allowed);
  EXPECT_EQ(a.port, b.port);
  EXPECT_EQ(a.bytes_up, b.bytes_up);
  EXPECT_EQ(a.bytes_down, b.bytes_down);
  EXPECT_EQ(a.dropped, b.dropped);
  EXPECT_EQ(a.session, b.session);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.reason, b.reason);
}

TEST(VerdictReportTest, RoundTrips) {
  for (const VerdictReport& r : {Allowed(), Denied()}) {
    const std::string record = EncodeVerdictReport(r);
    EXPECT_EQ(record.size(), egress::kVerdictReportHeaderBytes + r.session.size() + r.name.size() +
                                 r.reason.size());
    auto back = DecodeVerdictReport(record);
    ASSERT_TRUE(back.has_value()) << back.error().ToString();
    ExpectSame(*back, r);
  }
}

TEST(VerdictReportTest, EveryKindAndTheLargestRecord) {
  VerdictReport r = Denied();
  const std::string session(64, 's'), name(253, 'n'), reason(200, 'r');
  r.session = session;
  r.name = name;
  r.reason = reason;
  for (VerdictKind kind :
       {VerdictKind::kProxy, VerdictKind::kTransparent, VerdictKind::kDns, VerdictKind::kGateway}) {
    r.kind = kind;
    const std::string record = EncodeVerdictReport(r);
    EXPECT_EQ(record.size(), egress::kMaxVerdictReportBytes);
    auto back = DecodeVerdictReport(record);
    ASSERT_TRUE(back.has_value()) << back.error().ToString();
    EXPECT_EQ(back->kind, kind);
  }
}

TEST(VerdictReportTest, TruncatedOrLongerRecordsAreRefused) {
  const std::string record = EncodeVerdictReport(Allowed());
  for (size_t n = 0; n < record.size(); ++n) {
    EXPECT_FALSE(DecodeVerdictReport(record.substr(0, n)).has_value()) << n;
  }
  EXPECT_FALSE(DecodeVerdictReport(record + "x").has_value());
  EXPECT_FALSE(DecodeVerdictReport(std::string(10000, '\1')).has_value());
}

TEST(VerdictReportTest, BadHeadersAreRefused) {
  const std::string good = EncodeVerdictReport(Denied());
  auto with = [&](size_t at, char byte) {
    std::string r = good;
    r[at] = byte;
    return DecodeVerdictReport(r);
  };
  auto version = with(0, 2);
  ASSERT_FALSE(version.has_value());
  EXPECT_NE(version.error().ToString().find("version 2"), std::string::npos);
  EXPECT_FALSE(with(0, 0).has_value());
  EXPECT_FALSE(with(1, 4).has_value());  // unknown kind
  EXPECT_FALSE(with(2, 2).has_value());  // unknown flag
  EXPECT_FALSE(with(2, static_cast<char>(0x81)).has_value());
  EXPECT_FALSE(with(3, 0).has_value());                       // no session id
  EXPECT_FALSE(with(3, 65).has_value());                      // session id too long
  EXPECT_FALSE(with(4, static_cast<char>(254)).has_value());  // name too long
  EXPECT_FALSE(with(5, static_cast<char>(201)).has_value());  // reason too long
  // Lengths that disagree with the record's size, either way.
  EXPECT_FALSE(with(4, static_cast<char>(good[4] + 1)).has_value());
  EXPECT_FALSE(with(5, static_cast<char>(good[5] - 1)).has_value());
}

TEST(VerdictReportTest, BadContentIsRefused) {
  const size_t at = egress::kVerdictReportHeaderBytes;
  std::string r = EncodeVerdictReport(Denied());
  r[at] = '/';  // in the session id
  EXPECT_FALSE(DecodeVerdictReport(r).has_value());
  r = EncodeVerdictReport(Denied());
  r[at + Denied().session.size()] = ' ';  // a space in the name
  EXPECT_FALSE(DecodeVerdictReport(r).has_value());
  r = EncodeVerdictReport(Denied());
  r.back() = '\n';  // a newline in the reason
  EXPECT_FALSE(DecodeVerdictReport(r).has_value());
  // An allowed verdict has no reason; a denied one no bytes.
  VerdictReport odd = Allowed();
  std::string allowed = EncodeVerdictReport(odd);
  allowed[5] = 1;
  allowed += "x";
  EXPECT_FALSE(DecodeVerdictReport(allowed).has_value());
  std::string denied = EncodeVerdictReport(Denied());
  denied[15] = 1;  // bytes up
  EXPECT_FALSE(DecodeVerdictReport(denied).has_value());
}

TEST(VerdictReportTest, TheEncoderCutsAndCleansWhatItIsGiven) {
  VerdictReport r = Denied();
  const std::string name = "bad name\n" + std::string(400, 'a');
  const std::string reason = "why\x01" + std::string(400, 'b');
  r.name = name;
  r.reason = reason;
  auto back = DecodeVerdictReport(EncodeVerdictReport(r));
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(back->name.size(), egress::kMaxReportNameBytes);
  EXPECT_EQ(back->name.substr(0, 9), "bad?name?");
  EXPECT_EQ(back->reason.size(), egress::kMaxReportReasonBytes);
  EXPECT_EQ(back->reason.substr(0, 4), "why?");
  // A session id that cannot be one is sent empty, which the decoder refuses.
  r.session = "s bad";
  EXPECT_FALSE(DecodeVerdictReport(EncodeVerdictReport(r)).has_value());
}

TEST(VerdictReportTest, ListenersMapToKinds) {
  EXPECT_EQ(egress::KindOfListener("proxy"), VerdictKind::kProxy);
  EXPECT_EQ(egress::KindOfListener("tls"), VerdictKind::kTransparent);
  EXPECT_EQ(egress::KindOfListener("http"), VerdictKind::kTransparent);
  EXPECT_EQ(egress::KindOfListener("dns"), VerdictKind::kDns);
  EXPECT_EQ(egress::KindOfListener("endpoint"), VerdictKind::kGateway);
  EXPECT_EQ(egress::ToString(VerdictKind::kGateway), "gateway");
  EXPECT_EQ(egress::ToString(VerdictKind::kTransparent), "transparent");
}

// ---- The supervisor's side.

TEST(EgressCountersTest, VerdictsAddUpByKind) {
  wire::EgressCounters c;
  supervisor::CountEgressVerdict(Allowed(), c);
  supervisor::CountEgressVerdict(Allowed(), c);
  supervisor::CountEgressVerdict(Denied(), c);
  VerdictReport gateway = Allowed();
  gateway.kind = VerdictKind::kGateway;
  gateway.bytes_up = 10;
  gateway.bytes_down = 20;
  supervisor::CountEgressVerdict(gateway, c);
  VerdictReport dns = Allowed();
  dns.kind = VerdictKind::kDns;
  dns.bytes_up = dns.bytes_down = 0;
  supervisor::CountEgressVerdict(dns, c);
  dns.allowed = false;
  dns.reason = "not in this session's allowlist";
  supervisor::CountEgressVerdict(dns, c);
  supervisor::CountEgressVerdict(dns, c);
  EXPECT_EQ(c.allowed, 3u);
  EXPECT_EQ(c.denied, 1u);
  EXPECT_EQ(c.bytes_up, 2 * 1234u + 10);
  EXPECT_EQ(c.bytes_down, 2 * Allowed().bytes_down + 20);
  EXPECT_EQ(c.gateway_requests, 1u);
  EXPECT_EQ(c.dns_answered, 1u);
  EXPECT_EQ(c.dns_refused, 2u);
}

// Byte counts add up saturating: reports of a compromised egress daemon cannot make a counter
// wrap around and go down (review rev20, F3); below the top they add exactly.
TEST(EgressCountersTest, BytesSaturateInsteadOfWrapping) {
  wire::EgressCounters c;
  VerdictReport huge = Allowed();
  huge.bytes_up = UINT64_MAX;
  huge.bytes_down = UINT64_MAX - 1;
  supervisor::CountEgressVerdict(Allowed(), c);
  supervisor::CountEgressVerdict(huge, c);
  supervisor::CountEgressVerdict(huge, c);
  EXPECT_EQ(c.bytes_up, UINT64_MAX);
  EXPECT_EQ(c.bytes_down, UINT64_MAX);
  EXPECT_EQ(c.allowed, 3u);
  wire::EgressCounters exact;
  VerdictReport big = Allowed();
  big.bytes_up = UINT64_MAX - 5000;
  supervisor::CountEgressVerdict(big, exact);
  supervisor::CountEgressVerdict(Allowed(), exact);
  EXPECT_EQ(exact.bytes_up, UINT64_MAX - 5000 + 1234);
}

TEST(EgressAuditTest, LinesCarryTheVerdictsMembers) {
  const supervisor::EgressPeer peer{4242, 998};
  const std::string allow =
      supervisor::AuditLog::Format(supervisor::EgressAuditEntry(Allowed(), peer), 0);
  EXPECT_EQ(allow,
            R"({"time":"1970-01-01T00:00:00.000Z","action":"egress","session":"s-abc_1",)"
            R"("principal":null,"peer_pid":4242,"peer_uid":998,"client":"monkeyproof-egress",)"
            R"("via":null,"outcome":"ok","kind":"transparent","name":"api.example.com",)"
            R"("port":443,"verdict":"allow","bytes_up":1234,"bytes_down":1099511627783})");
  const std::string deny =
      supervisor::AuditLog::Format(supervisor::EgressAuditEntry(Denied(), peer), 0);
  EXPECT_NE(deny.find(R"("outcome":"denied","kind":"proxy","name":"evil.example","port":22,)"
                      R"("verdict":"deny","reason":"not in this session's allowlist"})"),
            std::string::npos)
      << deny;
  EXPECT_EQ(deny.find("bytes_"), std::string::npos);
  VerdictReport dns = Allowed();
  dns.kind = VerdictKind::kDns;
  dns.port = 53;
  const std::string dns_line =
      supervisor::AuditLog::Format(supervisor::EgressAuditEntry(dns, peer), 0);
  EXPECT_NE(dns_line.find(R"("kind":"dns","name":"api.example.com","port":53,"verdict":"allow"})"),
            std::string::npos)
      << dns_line;
}

// The throttle the egress lines pass (reused from the API's audit lines): per session per
// window, then one summary per session.
TEST(EgressAuditTest, TheDnsThrottleHoldsBackPerSession) {
  http::AuditThrottle t(supervisor::kEgressDnsAuditLimits);
  const auto now = http::AuditThrottle::Clock::now();
  size_t admitted = 0;
  for (int i = 0; i < 100; ++i) admitted += t.Admit("s-a", now) ? 1 : 0;
  EXPECT_EQ(admitted, supervisor::kEgressDnsAuditLimits.lines_per_key);
  EXPECT_TRUE(t.Admit("s-b", now));  // another session has its own share
  auto summaries = t.TakeSummaries(now + std::chrono::seconds(61));
  ASSERT_EQ(summaries.size(), 1u);
  EXPECT_EQ(summaries[0].key, "s-a");
  EXPECT_EQ(summaries[0].count, 100 - admitted);
}

// ---- On the control protocol (version 5) and in the stored record.

template <typename T>
T RoundTrip(const T& body) {
  auto frame = wire::EncodeResponse({7, body});
  EXPECT_TRUE(frame);
  if (!frame) return {};
  auto view = wire::DecodeFrame(*frame);
  EXPECT_TRUE(view);
  auto resp = wire::DecodeResponse(*view);
  EXPECT_TRUE(resp) << resp.error().ToString();
  return resp ? std::get<T>(resp->body) : T{};
}

wire::SessionInfo WithEgress() {
  wire::SessionInfo s;
  s.id = "s-egress";
  s.state = wire::SessionState::kRunning;
  s.task_preview = "ls";
  s.cwd = "/w";
  s.command = "sh -lc ls";
  s.created_at_ms = 1;
  s.egress = wire::EgressCounters{1, 2, 3, 4, 5, 6, 7};
  return s;
}

TEST(EgressWireTest, CountersTravelInSessionInfoHealthAndTheRecord) {
  const wire::SessionInfo s = WithEgress();
  EXPECT_EQ(RoundTrip(s), s);
  wire::SessionInfo none = s;
  none.egress.reset();
  EXPECT_EQ(RoundTrip(none), none);
  auto stored = wire::SessionInfoFromJson(wire::SessionInfoToJson(s));
  ASSERT_TRUE(stored) << stored.error().ToString();
  EXPECT_EQ(*stored, s);
  wire::HealthInfo h;
  h.version = "1";
  h.egress = wire::EgressTotals{{10, 20, 30, 40, 50, 60, 70}, 8, 9};
  EXPECT_EQ(RoundTrip(h), h);
}

// A peer of version 4 or older refuses unknown members: it gets the responses without them.
TEST(EgressWireTest, OlderPeersGetNoCounters) {
  wire::Response r{1, WithEgress()};
  wire::FitResponseToProto(r, 5);
  EXPECT_TRUE(std::get<wire::SessionInfo>(r.body).egress.has_value());
  wire::FitResponseToProto(r, 4);
  EXPECT_FALSE(std::get<wire::SessionInfo>(r.body).egress.has_value());
  wire::Response list{2, wire::SessionList{{WithEgress(), WithEgress()}, false}};
  wire::FitResponseToProto(list, 4);
  for (const auto& s : std::get<wire::SessionList>(list.body).sessions) {
    EXPECT_FALSE(s.egress.has_value());
  }
  wire::HealthInfo h;
  h.egress = wire::EgressTotals{};
  wire::Response health{3, h};
  wire::FitResponseToProto(health, 1);
  EXPECT_FALSE(std::get<wire::HealthInfo>(health.body).egress.has_value());
  EXPECT_NE(wire::MissingInProto(4).find("egress"), std::string::npos);
  EXPECT_EQ(wire::MissingInProto(5), "");
}

}  // namespace
}  // namespace mp

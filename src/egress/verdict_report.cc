// The verdict report records. See verdict_report.h.
#include "egress/verdict_report.h"

#include <array>

namespace mp::egress {
namespace {

constexpr std::array<std::string_view, kVerdictKindCount> kKindNames = {"proxy", "transparent",
                                                                        "dns", "gateway"};

bool IsSessionByte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}
bool IsNameByte(char c) { return c >= 0x21 && c <= 0x7e; }
bool IsReasonByte(char c) { return c >= 0x20 && c <= 0x7e; }

void PutU64(std::string& out, size_t at, uint64_t v) {
  for (size_t i = 0; i < 8; ++i) out[at + i] = static_cast<char>((v >> (56 - 8 * i)) & 0xff);
}
uint64_t GetU64(std::string_view in, size_t at) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[at + i]);
  return v;
}

// `s` cut to `max` bytes, each byte outside `ok` replaced by '?'.
std::string Clean(std::string_view s, size_t max, bool (*ok)(char)) {
  std::string out(s.substr(0, max));
  for (char& c : out) {
    if (!ok(c)) c = '?';
  }
  return out;
}

bool All(std::string_view s, bool (*ok)(char)) {
  for (const char c : s) {
    if (!ok(c)) return false;
  }
  return true;
}

}  // namespace

std::string_view ToString(VerdictKind kind) {
  const auto i = static_cast<size_t>(kind);
  return i < kKindNames.size() ? kKindNames[i] : "unknown";
}

VerdictKind KindOfListener(std::string_view listener) {
  if (listener == "tls" || listener == "http") return VerdictKind::kTransparent;
  if (listener == "dns") return VerdictKind::kDns;
  if (listener == "endpoint") return VerdictKind::kGateway;
  return VerdictKind::kProxy;
}

std::string EncodeVerdictReport(const VerdictReport& r) {
  const std::string session =
      (r.session.size() <= kMaxReportSessionBytes && All(r.session, IsSessionByte))
          ? std::string(r.session)
          : std::string();
  const std::string name = Clean(r.name, kMaxReportNameBytes, IsNameByte);
  const std::string reason = Clean(r.reason, kMaxReportReasonBytes, IsReasonByte);
  std::string out(kVerdictReportHeaderBytes, '\0');
  out[0] = static_cast<char>(kVerdictReportVersion);
  out[1] = static_cast<char>(r.kind);
  out[2] = static_cast<char>(r.allowed ? 1 : 0);
  out[3] = static_cast<char>(session.size());
  out[4] = static_cast<char>(name.size());
  out[5] = static_cast<char>(reason.size());
  out[6] = static_cast<char>(r.port >> 8);
  out[7] = static_cast<char>(r.port & 0xff);
  PutU64(out, 8, r.bytes_up);
  PutU64(out, 16, r.bytes_down);
  PutU64(out, 24, r.dropped);
  out += session;
  out += name;
  out += reason;
  return out;
}

Result<VerdictReport> DecodeVerdictReport(std::string_view in) {
  if (in.size() < kVerdictReportHeaderBytes) {
    return PlainError("verdict report of " + std::to_string(in.size()) +
                      " bytes is shorter than its header");
  }
  if (static_cast<uint8_t>(in[0]) != kVerdictReportVersion) {
    return PlainError("verdict report of version " + std::to_string(static_cast<uint8_t>(in[0])) +
                      ", not " + std::to_string(kVerdictReportVersion));
  }
  const auto kind = static_cast<uint8_t>(in[1]);
  if (kind >= kVerdictKindCount) return PlainError("verdict report of an unknown kind");
  const auto flags = static_cast<uint8_t>(in[2]);
  if ((flags & ~1u) != 0) return PlainError("verdict report with unknown flags");
  const size_t session_len = static_cast<uint8_t>(in[3]);
  const size_t name_len = static_cast<uint8_t>(in[4]);
  const size_t reason_len = static_cast<uint8_t>(in[5]);
  if (session_len < 1 || session_len > kMaxReportSessionBytes || name_len > kMaxReportNameBytes ||
      reason_len > kMaxReportReasonBytes) {
    return PlainError("verdict report with a string length out of bounds");
  }
  if (in.size() != kVerdictReportHeaderBytes + session_len + name_len + reason_len) {
    return PlainError(
        "verdict report of " + std::to_string(in.size()) +
        " bytes, not the header plus its strings' " +
        std::to_string(kVerdictReportHeaderBytes + session_len + name_len + reason_len));
  }
  VerdictReport r;
  r.kind = static_cast<VerdictKind>(kind);
  r.allowed = (flags & 1u) != 0;
  r.port = static_cast<uint16_t>((static_cast<uint8_t>(in[6]) << 8) | static_cast<uint8_t>(in[7]));
  r.bytes_up = GetU64(in, 8);
  r.bytes_down = GetU64(in, 16);
  r.dropped = GetU64(in, 24);
  r.session = in.substr(kVerdictReportHeaderBytes, session_len);
  r.name = in.substr(kVerdictReportHeaderBytes + session_len, name_len);
  r.reason = in.substr(kVerdictReportHeaderBytes + session_len + name_len, reason_len);
  if (!All(r.session, IsSessionByte)) return PlainError("verdict report with a bad session id");
  if (!All(r.name, IsNameByte)) return PlainError("verdict report with a bad byte in its name");
  if (!All(r.reason, IsReasonByte)) {
    return PlainError("verdict report with a bad byte in its reason");
  }
  if (r.allowed && !r.reason.empty()) return PlainError("allowed verdict report with a reason");
  if (!r.allowed && (r.bytes_up != 0 || r.bytes_down != 0)) {
    return PlainError("denied verdict report with bytes");
  }
  return r;
}

}  // namespace mp::egress

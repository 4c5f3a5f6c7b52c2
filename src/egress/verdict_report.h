// Verdict reports: monkeyproof-egress -> monkeyproofd on the handover connection (issue 14).
// Once the supervisor has sent {"type":"hello","reports":1} (handover.h) on a connection, the
// daemon sends one record per verdict of the sessions handed over on it, so that the root
// supervisor can write the audit log and keep the per-session counters and the totals for
// /metrics. The supervisor parses these records as root, so the format is fixed-size binary
// with a version byte and length-checked strings, decoded without any allocation (views into
// the received record). Version 1, one SOCK_SEQPACKET record, every integer big-endian:
//   0      version (1)
//   1      kind: 0 proxy, 1 transparent (TLS or HTTP listener), 2 dns, 3 gateway
//   2      flags: bit 0 allowed; the other bits are 0
//   3      session id length, 1..64 ([A-Za-z0-9_-])
//   4      name length, 0..253 (bytes 0x21..0x7e)
//   5      reason length, 0..200 (bytes 0x20..0x7e; empty when allowed)
//   6..7   port
//   8..15  bytes up (client -> upstream), 16..23 bytes down (0 when denied)
//   24..31 dropped: reports the daemon dropped on this connection before this one (a
//          running total; its queue is full while the supervisor does not read)
//   32..   session id, name, reason, back to back; the record ends exactly there.
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace mp::egress {

inline constexpr uint8_t kVerdictReportVersion = 1;
inline constexpr size_t kVerdictReportHeaderBytes = 32;
inline constexpr size_t kMaxReportSessionBytes = 64;
inline constexpr size_t kMaxReportNameBytes = 253;
inline constexpr size_t kMaxReportReasonBytes = 200;
inline constexpr size_t kMaxVerdictReportBytes = kVerdictReportHeaderBytes +
                                                 kMaxReportSessionBytes + kMaxReportNameBytes +
                                                 kMaxReportReasonBytes;

enum class VerdictKind : uint8_t { kProxy = 0, kTransparent = 1, kDns = 2, kGateway = 3 };
inline constexpr uint8_t kVerdictKindCount = 4;
// "proxy", "transparent", "dns", "gateway" (the audit log's `kind`).
std::string_view ToString(VerdictKind kind);
// The kind of a Verdict::listener: "proxy" proxy, "tls"/"http" transparent, "dns" dns,
// "endpoint" gateway; anything else proxy.
VerdictKind KindOfListener(std::string_view listener);

// A decoded record: the strings are views into the record it was decoded from.
struct VerdictReport {
  VerdictKind kind = VerdictKind::kProxy;
  bool allowed = false;
  uint16_t port = 0;
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
  uint64_t dropped = 0;
  std::string_view session;
  std::string_view name;
  std::string_view reason;
};

// Never fails: a session id that does not fit gives an empty string (which the decoder
// refuses; the daemon's ids always fit), a name or reason is cut to its bound and any byte
// outside its range becomes '?'.
std::string EncodeVerdictReport(const VerdictReport& report);
// Strict: a record that is not exactly the header plus its three strings, of another version,
// with an unknown kind, a flag other than bit 0, a length out of bounds, a byte out of range,
// a reason on an allowed verdict or bytes on a denied one is an error naming what is wrong
// (never quoting the record). Allocates nothing on success.
Result<VerdictReport> DecodeVerdictReport(std::string_view record);

}  // namespace mp::egress

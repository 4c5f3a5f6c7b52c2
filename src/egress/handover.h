// The handover protocol between monkeyproofd (root) and monkeyproof-egress (issue 14): one
// AF_UNIX SOCK_SEQPACKET connection, opened by the supervisor to the daemon's socket, on
// which each record is one JSON object, sent by the supervisor only:
//   {"type":"open","session":"s-…","allow":["api.example.com:443", …],
//    "endpoints":[{"upstream":"https://api.anthropic.com","header":"x-api-key","value":"…"}]}
//       + SCM_RIGHTS with exactly kHandoverFdCount + endpoints listening sockets, in the order
//         proxy, tls, http, dns (session_netns.h), then one per endpoint in the endpoints'
//         order; the daemon serves them until told otherwise. "endpoints" (credential gateway
//         model endpoints) is omitted when there are none. Each endpoint's "value" is a real
//         credential: it never appears in an error or a log line, on either side.
//   {"type":"close","session":"s-…"}   the session ended: stop serving its sockets
//   {"type":"hello","reports":1}       sent first by a supervisor that reads verdict reports
//       (verdict_report.h) of that version: from then on the daemon sends one per verdict of
//       the sessions handed over on this connection. A daemon of a release before reports
//       refuses it (and closes the connection): both come in one package.
// An open for a session already served replaces it (a re-hand after a restart of either
// side). When the connection closes, the daemon stops every session it was given on it. The
// daemon answers nothing but verdict reports (after a hello): what it refuses it logs, and a
// session whose sockets nobody serves fails closed (the sockets' last copies close, connects are
// refused). Encoding and decoding are pure (the decoder is fuzzed: tests/fuzz/egress_fuzz.cc);
// SendRecord/ReceiveRecord make one sendmsg/recvmsg each. Thread-safe (no state).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::egress {

inline constexpr size_t kHandoverFdCount = 4;  // proxy, tls, http, dns
inline constexpr size_t kMaxGatewayEndpoints = 8;
inline constexpr size_t kMaxHandoverFds = kHandoverFdCount + kMaxGatewayEndpoints;
inline constexpr size_t kMaxEndpointHeaderBytes = 64;
inline constexpr size_t kMaxEndpointValueBytes = 4096;
inline constexpr size_t kMaxHandoverRecordBytes = 64 * 1024;  // one JSON record
inline constexpr size_t kMaxHandoverSessionIdBytes = 64;

// One credential gateway model endpoint: requests to its listener go to `upstream` with
// `header: value` in place of whatever the session sent in that header.
struct HandoverEndpoint {
  std::string upstream;  // "https://api.anthropic.com" (ParseUpstreamUrl)
  std::string header;    // the request header that carries the credential, e.g. "x-api-key"
  std::string value;     // the header's value to send upstream (the real credential) - secret
};

struct HandoverMessage {
  enum class Type { kOpen, kClose, kHello };
  Type type = Type::kOpen;
  std::string session;                      // [A-Za-z0-9_-]{1,64}; kHello: none
  std::vector<std::string> allow;           // kOpen: the policy's allow entries (AllowList::Parse)
  std::vector<HandoverEndpoint> endpoints;  // kOpen only, 0..kMaxGatewayEndpoints
  uint64_t reports = 0;                     // kHello: the verdict report version it reads
};

// An HTTP field name (RFC 9110 token).
bool IsHeaderToken(std::string_view s);
// A field name that may carry an endpoint's credential: a token other than the fields the
// gateway sets itself or that frame the message (Host, Content-Length, Transfer-Encoding,
// Connection; any case).
bool IsCredentialHeaderName(std::string_view s);

std::string EncodeHandover(const HandoverMessage& message);
// Strict: unknown or missing fields, a bad session id, more than 256 allow entries, or a
// record over kMaxHandoverRecordBytes are errors naming what is wrong. An endpoint's upstream
// must pass ParseUpstreamUrl; its header be an HTTP token of 1-64 characters other than Host,
// Content-Length, Transfer-Encoding and Connection; its value 1-4096 bytes without CR, LF or
// NUL (errors about a value never quote it). `fd_count` is the number of descriptors that came
// with the record: kHandoverFdCount + endpoints for open, 0 for close.
Result<HandoverMessage> DecodeHandover(std::string_view record, size_t fd_count);

// Sends `record` with `fds` (SCM_RIGHTS) in one sendmsg, MSG_NOSIGNAL. A non-blocking socket
// that cannot take it now fails with EAGAIN (nothing sent).
Result<void> SendRecord(int socket, std::string_view record, std::span<const int> fds);

struct ReceivedRecord {
  bool closed = false;  // orderly EOF
  std::string record;
  std::vector<UniqueFd> fds;  // every descriptor that came along (owned, CLOEXEC)
};
// Receives one record (at most kMaxHandoverRecordBytes, and kMaxHandoverFds descriptors);
// a longer record or truncated control data is an error (the descriptors that did arrive are
// closed).
Result<ReceivedRecord> ReceiveRecord(int socket);

}  // namespace mp::egress

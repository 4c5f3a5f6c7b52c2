// The handover protocol between monkeyproofd (root) and monkeyproof-egress (issue 14): one
// AF_UNIX SOCK_SEQPACKET connection, opened by the supervisor to the daemon's socket, on
// which each record is one JSON object, sent by the supervisor only:
//   {"type":"open","session":"s-…","allow":["api.example.com:443", …]}
//       + SCM_RIGHTS with exactly kHandoverFdCount listening sockets, in the order proxy, tls,
//         http, dns (session_netns.h); the daemon serves them until told otherwise
//   {"type":"close","session":"s-…"}   the session ended: stop serving its sockets
// An open for a session already served replaces it (a re-hand after a restart of either
// side). When the connection closes, the daemon stops every session it was given on it. The
// daemon answers nothing: what it refuses it logs, and a session whose sockets nobody serves
// fails closed (the sockets' last copies close, connects are refused).
// Encoding and decoding are pure (the decoder is fuzzed: tests/fuzz/egress_fuzz.cc);
// SendRecord/ReceiveRecord make one sendmsg/recvmsg each. Thread-safe (no state).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::egress {

inline constexpr size_t kHandoverFdCount = 4;                 // proxy, tls, http, dns
inline constexpr size_t kMaxHandoverRecordBytes = 64 * 1024;  // one JSON record
inline constexpr size_t kMaxHandoverSessionIdBytes = 64;

struct HandoverMessage {
  enum class Type { kOpen, kClose };
  Type type = Type::kOpen;
  std::string session;             // [A-Za-z0-9_-]{1,64}
  std::vector<std::string> allow;  // kOpen: the policy's allow entries (AllowList::Parse)
};

std::string EncodeHandover(const HandoverMessage& message);
// Strict: unknown or missing fields, a bad session id, more than 256 allow entries, or a
// record over kMaxHandoverRecordBytes are errors naming what is wrong. `fd_count` is the
// number of descriptors that came with the record: kHandoverFdCount for open, 0 for close.
Result<HandoverMessage> DecodeHandover(std::string_view record, size_t fd_count);

// Sends `record` with `fds` (SCM_RIGHTS) in one sendmsg, MSG_NOSIGNAL. A non-blocking socket
// that cannot take it now fails with EAGAIN (nothing sent).
Result<void> SendRecord(int socket, std::string_view record, std::span<const int> fds);

struct ReceivedRecord {
  bool closed = false;  // orderly EOF
  std::string record;
  std::vector<UniqueFd> fds;  // every descriptor that came along (owned, CLOEXEC)
};
// Receives one record (at most kMaxHandoverRecordBytes, and kHandoverFdCount descriptors);
// a longer record or truncated control data is an error (the descriptors that did arrive are
// closed).
Result<ReceivedRecord> ReceiveRecord(int socket);

}  // namespace mp::egress

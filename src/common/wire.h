// Frame codec of the control socket between monkeyproof-api and monkeyproofd (docs/protocol.md).
// One AF_UNIX SOCK_SEQPACKET record is one frame: "MPW1", u32le json_len, u32le data_len, the
// JSON envelope, then an opaque data tail. Both daemons use it; no privileged calls.
// EncodeFrame/DecodeFrame are pure (fuzzed by tests/fuzz/wire_fuzz.cc). SendFrame/ReceiveFrame
// make one sendmsg/recvmsg each. Every function is thread-safe; one socket must not be sent on
// (or received from) by two threads at once.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mp::wire {

inline constexpr std::array<uint8_t, 4> kFrameMagic = {'M', 'P', 'W', '1'};
inline constexpr size_t kFrameHeaderBytes = 12;              // magic + json_len + data_len
inline constexpr size_t kMaxFrameBytes = size_t{64} * 1024;  // one whole record, header included
// The most JSON plus data one frame carries.
inline constexpr size_t kMaxFrameBodyBytes = kMaxFrameBytes - kFrameHeaderBytes;

// Flow-control budget of one connection's outbox (frames queued after kWouldBlock), enforced
// by the sender (docs/protocol.md, "Flow control"). Above kOutboxSoftLimitBytes live output
// events are dropped and replaced by one `lagged` marker per session; responses and other
// events are still queued. A frame that would take the outbox above kOutboxHardLimitBytes
// closes the connection instead.
inline constexpr size_t kOutboxSoftLimitBytes = size_t{1024} * 1024;
inline constexpr size_t kOutboxHardLimitBytes = size_t{4} * 1024 * 1024;

// A decoded frame. Both members view the record buffer and are valid only as long as it is.
struct FrameView {
  std::string_view json;          // the envelope: json_len bytes, not parsed or checked here
  std::span<const uint8_t> data;  // the opaque tail: data_len bytes, possibly empty
};

// Builds one record. Fails (errnum EMSGSIZE) when 12 + json + data exceeds kMaxFrameBytes, and
// (errnum EPROTO) when `json` is empty. Does not parse the JSON.
Result<std::vector<uint8_t>> EncodeFrame(std::string_view json, std::span<const uint8_t> data = {});

// Splits one received record without copying. Fails with errnum EPROTO when the record is
// shorter than the header, the magic is wrong, json_len is 0, the record exceeds
// kMaxFrameBytes, or its length is not exactly 12 + json_len + data_len. Any such failure is a
// protocol error: the receiver closes the connection.
Result<FrameView> DecodeFrame(std::span<const uint8_t> record);

enum class SendStatus {
  kSent,        // the whole record is queued in the kernel
  kWouldBlock,  // EAGAIN on a non-blocking socket: nothing was sent; retry on EPOLLOUT
};

// Sends one already-encoded frame with MSG_NOSIGNAL (a closed peer is EPIPE, never SIGPIPE).
// The header is checked first (errnum EPROTO if it does not describe `frame`). SEQPACKET sends
// are atomic: a record goes whole or not at all. Other errors (EPIPE, ECONNRESET, ...) mean
// the connection is unusable.
Result<SendStatus> SendFrame(int fd, std::span<const uint8_t> frame);
// Same, gathering header, JSON and data with one sendmsg and no intermediate copy.
Result<SendStatus> SendFrame(int fd, std::string_view json, std::span<const uint8_t> data);

enum class ReceiveStatus {
  kFrame,       // `frame` is valid (it views the caller's buffer)
  kWouldBlock,  // EAGAIN on a non-blocking socket: no record is waiting
  kClosed,      // orderly EOF; a zero-length record reads the same way and is treated as EOF
};
struct Received {
  ReceiveStatus status = ReceiveStatus::kClosed;
  FrameView frame;
};

// Receives one record into `buffer` with recvmsg(MSG_TRUNC) and decodes it. A record longer
// than `buffer` is consumed and reported as an error (errnum EMSGSIZE); pass a buffer of
// kMaxFrameBytes. Ancillary data (a peer passing file descriptors) is refused (errnum EPROTO):
// no fds cross this boundary. Any error means: close the connection.
Result<Received> ReceiveFrame(int fd, std::span<uint8_t> buffer);

}  // namespace mp::wire

// Frame codec of the control socket between monkeyproof-api and monkeyproofd (docs/protocol.md).
// One AF_UNIX SOCK_SEQPACKET record is one frame: "MPW1", u32le json_len, u32le data_len, the
// JSON envelope, then an opaque data tail. A frame over one record (a spawn with a long task)
// travels as consecutive "MPP1" part records that FrameAssembler joins. Both daemons use it; no
// privileged calls. EncodeFrame/DecodeFrame/SplitFrame/FrameAssembler are pure (fuzzed by
// tests/fuzz/wire_fuzz.cc and parts_fuzz.cc). SendFrame/ReceiveFrame make one sendmsg/recvmsg
// each. Every function is thread-safe; one socket must not be sent on
// (or received from) by two threads at once.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
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

// Builds one frame. Fails (errnum EMSGSIZE) when 12 + json + data exceeds `max_bytes`, and
// (errnum EPROTO) when `json` is empty. Does not parse the JSON. A frame over kMaxFrameBytes
// (allowed up to kMaxMessageBytes) must go through SplitFrame before it is sent.
Result<std::vector<uint8_t>> EncodeFrame(std::string_view json, std::span<const uint8_t> data = {},
                                         size_t max_bytes = kMaxFrameBytes);

// Splits one frame without copying. Fails with errnum EPROTO when the frame is shorter than
// the header, the magic is wrong, json_len is 0, the frame exceeds `max_bytes`, or its length
// is not exactly 12 + json_len + data_len. Any such failure is a protocol error: the receiver
// closes the connection.
Result<FrameView> DecodeFrame(std::span<const uint8_t> record, size_t max_bytes = kMaxFrameBytes);

// ---- Frames over one record (docs/protocol.md, "Parts").
// A frame of more than kMaxFrameBytes (at most kMaxMessageBytes) is sent as part records, back
// to back on the connection with nothing in between: "MPP1", u32le total (the frame's length),
// u32le offset (where this part's bytes go), then 1..kMaxFrameBodyBytes bytes of the frame.
// The first part has offset 0, each next one starts where the previous ended, the last one
// ends at `total`. Only requests (API -> supervisor) use parts in protocol version 1.
inline constexpr std::array<uint8_t, 4> kPartMagic = {'M', 'P', 'P', '1'};
inline constexpr size_t kMaxMessageBytes = size_t{8} * 1024 * 1024;  // one frame, all parts

// The records to send for `frame` (EncodeFrame's output, up to kMaxMessageBytes), in order:
// the frame itself when it fits one record, else its parts. Fails (EMSGSIZE) over
// kMaxMessageBytes and (EPROTO) when `frame` is not a well-formed frame.
Result<std::vector<std::vector<uint8_t>>> SplitFrame(std::vector<uint8_t> frame);

// The receiving side of parts, one per connection. Add() takes each received record in order:
// a whole frame when no parts are pending comes back as is; a part is stored, and the last
// one returns the joined frame. The returned view points into `record` or into the assembler
// and is valid until the next Add(). Any error (EPROTO: a part out of order or of another
// total, a whole frame between parts, a joined frame that is not well formed) means: close.
// Memory: at most kMaxMessageBytes, freed once a joined frame has been handed out.
class FrameAssembler {
 public:
  Result<std::optional<FrameView>> Add(std::span<const uint8_t> record);
  bool pending() const { return total_ != 0; }

 private:
  std::vector<uint8_t> joined_;  // the parts so far; the last joined frame until the next Add
  size_t total_ = 0;             // the frame's length while parts are pending; 0 otherwise
};

enum class SendStatus {
  kSent,        // the whole record is queued in the kernel
  kWouldBlock,  // EAGAIN on a non-blocking socket: nothing was sent; retry on EPOLLOUT
};

// Sends one already-encoded frame (or one part record from SplitFrame) with MSG_NOSIGNAL (a closed
// peer is EPIPE, never SIGPIPE). The header is checked first (errnum EPROTO if it does not describe
// `frame`). SEQPACKET sends are atomic: a record goes whole or not at all. Other errors (EPIPE,
// ECONNRESET, ...) mean the connection is unusable.
Result<SendStatus> SendFrame(int fd, std::span<const uint8_t> frame);
// Same, gathering header, JSON and data with one sendmsg and no intermediate copy.
Result<SendStatus> SendFrame(int fd, std::string_view json, std::span<const uint8_t> data);

enum class ReceiveStatus {
  kFrame,       // `frame` is valid (it views the caller's buffer)
  kWouldBlock,  // EAGAIN on a non-blocking socket: no record is waiting
  kClosed,      // orderly EOF; a zero-length record reads the same way and is treated as EOF
  kPart,        // a part record was stored in the assembler; the frame is not complete yet
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
// Same, for a receiver that accepts parts: each record goes through `parts`, and a joined
// frame views the assembler (valid until its next Add).
Result<Received> ReceiveFrame(int fd, std::span<uint8_t> buffer, FrameAssembler& parts);

}  // namespace mp::wire

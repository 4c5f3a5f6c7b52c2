#include "common/wire.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace mp::wire {
namespace {

void PutU32Le(uint8_t* out, uint32_t v) {
  out[0] = static_cast<uint8_t>(v);
  out[1] = static_cast<uint8_t>(v >> 8);
  out[2] = static_cast<uint8_t>(v >> 16);
  out[3] = static_cast<uint8_t>(v >> 24);
}

uint32_t GetU32Le(const uint8_t* in) {
  return static_cast<uint32_t>(in[0]) | static_cast<uint32_t>(in[1]) << 8 |
         static_cast<uint32_t>(in[2]) << 16 | static_cast<uint32_t>(in[3]) << 24;
}

Error ProtocolError(std::string what) { return Error{EPROTO, "frame: " + std::move(what)}; }

// Checks sizes shared by both encoders; fills the 12-byte header.
Result<void> MakeHeader(size_t json_len, size_t data_len, size_t max_bytes,
                        uint8_t (&header)[kFrameHeaderBytes]) {
  if (json_len == 0) return ProtocolError("empty JSON envelope");
  // Each term is checked alone first so that the sum cannot wrap.
  const size_t max_body = max_bytes - kFrameHeaderBytes;
  if (json_len > max_body || data_len > max_body || json_len + data_len > max_body) {
    return Error{EMSGSIZE, "frame: " + std::to_string(json_len) + " bytes of JSON and " +
                               std::to_string(data_len) + " bytes of data exceed the frame " +
                               "limit of " + std::to_string(max_bytes) + " bytes"};
  }
  std::memcpy(header, kFrameMagic.data(), kFrameMagic.size());
  PutU32Le(header + 4, static_cast<uint32_t>(json_len));
  PutU32Le(header + 8, static_cast<uint32_t>(data_len));
  return Ok();
}

bool IsPart(std::span<const uint8_t> record) {
  return record.size() >= kPartMagic.size() &&
         std::memcmp(record.data(), kPartMagic.data(), kPartMagic.size()) == 0;
}

// A part's own header: its size, the total it announces, and its bytes within that total.
Result<void> CheckPartHeader(std::span<const uint8_t> record) {
  if (record.size() <= kFrameHeaderBytes || record.size() > kMaxFrameBytes) {
    return ProtocolError("part record of " + std::to_string(record.size()) +
                         " bytes: want a 12-byte header and 1 to " +
                         std::to_string(kMaxFrameBodyBytes) + " bytes");
  }
  const uint64_t total = GetU32Le(record.data() + 4);
  const uint64_t offset = GetU32Le(record.data() + 8);
  // A frame that fits one record is never split, so parts announce more than that.
  if (total <= kMaxFrameBytes || total > kMaxMessageBytes) {
    return ProtocolError("part announces a frame of " + std::to_string(total) + " bytes; want " +
                         std::to_string(kMaxFrameBytes + 1) + " to " +
                         std::to_string(kMaxMessageBytes));
  }
  if (offset + (record.size() - kFrameHeaderBytes) > total) {
    return ProtocolError("part of " + std::to_string(record.size() - kFrameHeaderBytes) +
                         " bytes at offset " + std::to_string(offset) + " runs past the frame's " +
                         std::to_string(total) + " bytes");
  }
  return Ok();
}

Result<SendStatus> SendIov(int fd, struct iovec* iov, size_t iov_count, size_t total) {
  struct msghdr msg {};
  msg.msg_iov = iov;
  msg.msg_iovlen = iov_count;
  for (;;) {
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) {
      // SEQPACKET on AF_UNIX sends whole records; a short count would mean a stream socket.
      if (static_cast<size_t>(n) != total) {
        return ProtocolError("sendmsg(fd " + std::to_string(fd) + ") sent " + std::to_string(n) +
                             " of " + std::to_string(total) + " bytes: not a SEQPACKET socket?");
      }
      return SendStatus::kSent;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return SendStatus::kWouldBlock;
    return ErrnoError("sendmsg(fd " + std::to_string(fd) + ", " + std::to_string(total) +
                      "-byte frame)");
  }
}

}  // namespace

Result<std::vector<uint8_t>> EncodeFrame(std::string_view json, std::span<const uint8_t> data,
                                         size_t max_bytes) {
  uint8_t header[kFrameHeaderBytes];
  MP_RETURN_IF_ERROR(MakeHeader(json.size(), data.size(), max_bytes, header));
  std::vector<uint8_t> out;
  out.reserve(kFrameHeaderBytes + json.size() + data.size());
  out.insert(out.end(), header, header + kFrameHeaderBytes);
  out.insert(out.end(), json.begin(), json.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

Result<FrameView> DecodeFrame(std::span<const uint8_t> record, size_t max_bytes) {
  if (record.size() < kFrameHeaderBytes) {
    return ProtocolError("record of " + std::to_string(record.size()) +
                         " bytes is shorter than the 12-byte header");
  }
  if (std::memcmp(record.data(), kFrameMagic.data(), kFrameMagic.size()) != 0) {
    return ProtocolError("bad magic (want \"MPW1\")");
  }
  if (record.size() > max_bytes) {
    return ProtocolError("record of " + std::to_string(record.size()) + " bytes exceeds " +
                         std::to_string(max_bytes));
  }
  const uint64_t json_len = GetU32Le(record.data() + 4);
  const uint64_t data_len = GetU32Le(record.data() + 8);
  if (json_len == 0) return ProtocolError("empty JSON envelope");
  // u32 + u32 + 12 fits in uint64_t, so this comparison cannot wrap.
  if (kFrameHeaderBytes + json_len + data_len != record.size()) {
    return ProtocolError("record of " + std::to_string(record.size()) +
                         " bytes does not match 12 + json_len " + std::to_string(json_len) +
                         " + data_len " + std::to_string(data_len));
  }
  FrameView view;
  view.json =
      std::string_view(reinterpret_cast<const char*>(record.data()) + kFrameHeaderBytes, json_len);
  view.data = record.subspan(kFrameHeaderBytes + json_len, data_len);
  return view;
}

Result<SendStatus> SendFrame(int fd, std::span<const uint8_t> frame) {
  // Header only: O(1), JSON is not parsed. A part record is checked on its own (offset and
  // size within the announced total); the order of parts is the caller's.
  if (IsPart(frame)) {
    MP_RETURN_IF_ERROR(CheckPartHeader(frame));
  } else {
    MP_RETURN_IF_ERROR(DecodeFrame(frame));
  }
  struct iovec iov = {const_cast<uint8_t*>(frame.data()), frame.size()};
  return SendIov(fd, &iov, 1, frame.size());
}

Result<SendStatus> SendFrame(int fd, std::string_view json, std::span<const uint8_t> data) {
  uint8_t header[kFrameHeaderBytes];
  MP_RETURN_IF_ERROR(MakeHeader(json.size(), data.size(), kMaxFrameBytes, header));
  // iovec wants non-const pointers; sendmsg only reads them.
  struct iovec iov[3] = {
      {header, kFrameHeaderBytes},
      {const_cast<char*>(json.data()), json.size()},
      {const_cast<uint8_t*>(data.data()), data.size()},
  };
  return SendIov(fd, iov, data.empty() ? 2 : 3, kFrameHeaderBytes + json.size() + data.size());
}

namespace {

// One recvmsg: the record (a view of `buffer`), or nullopt for EAGAIN, or an empty span for
// EOF.
Result<std::optional<std::span<const uint8_t>>> ReceiveRecord(int fd, std::span<uint8_t> buffer) {
  struct iovec iov = {buffer.data(), buffer.size()};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // No control buffer on purpose: if the peer attaches SCM_RIGHTS, the kernel closes the
  // passed descriptors instead of installing them here and reports MSG_CTRUNC.
  ssize_t n;
  do {
    // MSG_TRUNC in `flags` makes AF_UNIX datagram/seqpacket recvmsg return the record's real
    // length; the flag in msg_flags is what tells us the record did not fit.
    n = ::recvmsg(fd, &msg, MSG_TRUNC | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::optional<std::span<const uint8_t>>();
    return ErrnoError("recvmsg(fd " + std::to_string(fd) + ")");
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    return ProtocolError("peer sent ancillary data (file descriptors?) on fd " +
                         std::to_string(fd) + "; none may cross this socket");
  }
  if ((msg.msg_flags & MSG_TRUNC) || static_cast<size_t>(n) > buffer.size()) {
    return Error{EMSGSIZE, "frame: record of " + std::to_string(n) +
                               " bytes truncated by a receive buffer of " +
                               std::to_string(buffer.size()) + " bytes"};
  }
  // SEQPACKET: 0 is EOF, and also what an (invalid) empty record reads as.
  return std::optional<std::span<const uint8_t>>(buffer.first(static_cast<size_t>(n)));
}

}  // namespace

Result<Received> ReceiveFrame(int fd, std::span<uint8_t> buffer) {
  MP_TRY(auto record, ReceiveRecord(fd, buffer));
  if (!record) return Received{ReceiveStatus::kWouldBlock, {}};
  if (record->empty()) return Received{ReceiveStatus::kClosed, {}};
  MP_TRY(FrameView view, DecodeFrame(*record));
  return Received{ReceiveStatus::kFrame, view};
}

Result<Received> ReceiveFrame(int fd, std::span<uint8_t> buffer, FrameAssembler& parts) {
  MP_TRY(auto record, ReceiveRecord(fd, buffer));
  if (!record) return Received{ReceiveStatus::kWouldBlock, {}};
  if (record->empty()) return Received{ReceiveStatus::kClosed, {}};
  MP_TRY(std::optional<FrameView> view, parts.Add(*record));
  if (!view) return Received{ReceiveStatus::kPart, {}};
  return Received{ReceiveStatus::kFrame, *view};
}

Result<std::vector<std::vector<uint8_t>>> SplitFrame(std::vector<uint8_t> frame) {
  if (frame.size() > kMaxMessageBytes) {
    return Error{EMSGSIZE, "frame: " + std::to_string(frame.size()) +
                               " bytes exceed the message limit of " +
                               std::to_string(kMaxMessageBytes) + " bytes"};
  }
  MP_RETURN_IF_ERROR(DecodeFrame(frame, kMaxMessageBytes));
  std::vector<std::vector<uint8_t>> records;
  if (frame.size() <= kMaxFrameBytes) {
    records.push_back(std::move(frame));
    return records;
  }
  for (size_t offset = 0; offset < frame.size(); offset += kMaxFrameBodyBytes) {
    const size_t n = std::min(kMaxFrameBodyBytes, frame.size() - offset);
    std::vector<uint8_t> part(kFrameHeaderBytes + n);
    std::memcpy(part.data(), kPartMagic.data(), kPartMagic.size());
    PutU32Le(part.data() + 4, static_cast<uint32_t>(frame.size()));
    PutU32Le(part.data() + 8, static_cast<uint32_t>(offset));
    std::memcpy(part.data() + kFrameHeaderBytes, frame.data() + offset, n);
    records.push_back(std::move(part));
  }
  return records;
}

Result<std::optional<FrameView>> FrameAssembler::Add(std::span<const uint8_t> record) {
  if (total_ == 0) joined_ = {};  // the previous joined frame's view ends here; free it
  if (!IsPart(record)) {
    if (total_ != 0) {
      return ProtocolError("a whole frame arrived while " + std::to_string(joined_.size()) +
                           " of " + std::to_string(total_) + " bytes of parts were pending");
    }
    MP_TRY(FrameView view, DecodeFrame(record));
    return std::optional<FrameView>(view);
  }
  MP_RETURN_IF_ERROR(CheckPartHeader(record));
  const size_t total = GetU32Le(record.data() + 4);
  const size_t offset = GetU32Le(record.data() + 8);
  if (total_ == 0) {
    if (offset != 0) {
      return ProtocolError("first part at offset " + std::to_string(offset) + ", want 0");
    }
    joined_.reserve(total);
    total_ = total;
  } else if (total != total_ || offset != joined_.size()) {
    return ProtocolError("part of a " + std::to_string(total) + "-byte frame at offset " +
                         std::to_string(offset) + " does not continue the " +
                         std::to_string(total_) + "-byte frame at offset " +
                         std::to_string(joined_.size()));
  }
  joined_.insert(joined_.end(), record.begin() + kFrameHeaderBytes, record.end());
  if (joined_.size() < total_) return std::optional<FrameView>();
  total_ = 0;
  MP_TRY(FrameView view, DecodeFrame(joined_, kMaxMessageBytes));
  return std::optional<FrameView>(view);
}

}  // namespace mp::wire

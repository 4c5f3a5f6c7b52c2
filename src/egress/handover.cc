// The supervisor -> monkeyproof-egress handover records. See handover.h.
#include "egress/handover.h"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/json_strict.h"

namespace mp::egress {
namespace {

constexpr std::array<std::string_view, 2> kTypeNames = {"open", "close"};
constexpr size_t kMaxAllowEntries = 256;

bool IsSessionId(std::string_view s) {
  if (s.empty() || s.size() > kMaxHandoverSessionIdBytes) return false;
  for (const char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string EncodeHandover(const HandoverMessage& message) {
  nlohmann::json j;
  j["type"] = kTypeNames[static_cast<size_t>(message.type)];
  j["session"] = message.session;
  if (message.type == HandoverMessage::Type::kOpen) j["allow"] = message.allow;
  return j.dump();
}

Result<HandoverMessage> DecodeHandover(std::string_view record, size_t fd_count) {
  if (record.size() > kMaxHandoverRecordBytes) {
    return PlainError("handover record of " + std::to_string(record.size()) + " bytes exceeds " +
                      std::to_string(kMaxHandoverRecordBytes));
  }
  nlohmann::json j;
  MP_RETURN_IF_ERROR(wire::ParseJson(record, &j, {.max_depth = 3}));
  wire::FieldErrors errors;
  wire::ObjectReader r(j, "", &errors);
  HandoverMessage m;
  m.type = static_cast<HandoverMessage::Type>(r.Enum("type", kTypeNames));
  m.session = r.String("session", {1, kMaxHandoverSessionIdBytes, IsSessionId,
                                   "a session id ([A-Za-z0-9_-]{1,64})"});
  if (errors.empty() && m.type == HandoverMessage::Type::kOpen) {
    r.Require("allow");
    m.allow = r.StringArray("allow", kMaxAllowEntries, {1, 300});
  }
  r.RejectUnknown();
  if (!errors.empty()) return errors.ToError();
  const size_t want = m.type == HandoverMessage::Type::kOpen ? kHandoverFdCount : 0;
  if (fd_count != want) {
    return PlainError("handover \"" + std::string(kTypeNames[static_cast<size_t>(m.type)]) +
                      "\" came with " + std::to_string(fd_count) + " descriptors, not " +
                      std::to_string(want));
  }
  return m;
}

Result<void> SendRecord(int socket, std::string_view record, std::span<const int> fds) {
  if (fds.size() > kHandoverFdCount) return PlainError("too many descriptors for one record");
  iovec iov{const_cast<char*>(record.data()), record.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kHandoverFdCount)] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError("sendmsg(egress handover)");
  if (static_cast<size_t>(n) != record.size()) return PlainError("sendmsg: short handover record");
  return Ok();
}

Result<ReceivedRecord> ReceiveRecord(int socket) {
  ReceivedRecord out;
  out.record.resize(kMaxHandoverRecordBytes + 1);
  iovec iov{out.record.data(), out.record.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kHandoverFdCount)] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC | MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError("recvmsg(egress handover)");
  // Whatever came along is owned from here on, so an error below closes it.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      out.fds.emplace_back(fd);
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    return PlainError("handover record came with more than " + std::to_string(kHandoverFdCount) +
                      " descriptors");
  }
  if (static_cast<size_t>(n) > kMaxHandoverRecordBytes) {
    return PlainError("handover record exceeds " + std::to_string(kMaxHandoverRecordBytes) +
                      " bytes");
  }
  if (n == 0 && out.fds.empty()) {
    out.closed = true;
    out.record.clear();
    return out;
  }
  out.record.resize(static_cast<size_t>(n));
  return out;
}

}  // namespace mp::egress

// The supervisor -> monkeyproof-egress handover records. See handover.h.
#include "egress/handover.h"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/json_strict.h"
#include "egress/upstream_url.h"

namespace mp::egress {
namespace {

constexpr std::array<std::string_view, 3> kTypeNames = {"open", "close", "hello"};
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

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

}  // namespace

bool IsHeaderToken(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

bool IsCredentialHeaderName(std::string_view s) {
  if (!IsHeaderToken(s)) return false;
  for (const std::string_view reserved :
       {"host", "content-length", "transfer-encoding", "connection"}) {
    if (EqualsIgnoringCase(s, reserved)) return false;
  }
  return true;
}

namespace {

void ReadEndpoints(wire::ObjectReader& r, std::vector<HandoverEndpoint>* out) {
  const size_t count = r.Array("endpoints", kMaxGatewayEndpoints, false);
  for (size_t i = 0; i < count; ++i) {
    wire::ObjectReader e = r.ObjectItem("endpoints", i);
    if (!e.is_object()) continue;
    HandoverEndpoint endpoint;
    endpoint.upstream = e.String("upstream", {1, kMaxUpstreamUrlBytes});
    if (!endpoint.upstream.empty()) {
      if (auto url = ParseUpstreamUrl(endpoint.upstream); !url)
        e.Fail("upstream", url.error().what);
    }
    endpoint.header = e.String("header", {1, kMaxEndpointHeaderBytes, IsCredentialHeaderName,
                                          "an HTTP header name other than Host, Content-Length, "
                                          "Transfer-Encoding and Connection"});
    // No `valid` check in the rule: its error would quote the value, a secret.
    endpoint.value = e.String("value", {1, kMaxEndpointValueBytes});
    if (endpoint.value.find_first_of("\r\n") != std::string::npos) {
      e.Fail("value", "contains CR or LF");
    }
    e.RejectUnknown();
    out->push_back(std::move(endpoint));
  }
}

}  // namespace

std::string EncodeHandover(const HandoverMessage& message) {
  nlohmann::json j;
  j["type"] = kTypeNames[static_cast<size_t>(message.type)];
  if (message.type == HandoverMessage::Type::kHello) {
    j["reports"] = message.reports;
    return j.dump();
  }
  j["session"] = message.session;
  if (message.type == HandoverMessage::Type::kOpen) {
    j["allow"] = message.allow;
    if (!message.endpoints.empty()) {
      nlohmann::json endpoints = nlohmann::json::array();
      for (const HandoverEndpoint& e : message.endpoints) {
        endpoints.push_back({{"upstream", e.upstream}, {"header", e.header}, {"value", e.value}});
      }
      j["endpoints"] = std::move(endpoints);
    }
  }
  // Never throws: invalid UTF-8 (which the supervisor refuses before it gets here) becomes
  // U+FFFD instead of an exception that would end monkeyproofd.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<HandoverMessage> DecodeHandover(std::string_view record, size_t fd_count) {
  if (record.size() > kMaxHandoverRecordBytes) {
    return PlainError("handover record of " + std::to_string(record.size()) + " bytes exceeds " +
                      std::to_string(kMaxHandoverRecordBytes));
  }
  nlohmann::json j;
  if (auto parsed = wire::ParseJson(record, &j, {.max_depth = 3}); !parsed) {
    // The parser's message quotes the input near the error, which may be a credential.
    if (record.find("\"endpoints\"") != std::string_view::npos) {
      return PlainError(
          "handover record is not valid JSON (details withheld: it holds "
          "credentials)");
    }
    return parsed.error();
  }
  wire::FieldErrors errors;
  wire::ObjectReader r(j, "", &errors);
  HandoverMessage m;
  m.type = static_cast<HandoverMessage::Type>(r.Enum("type", kTypeNames));
  if (errors.empty() && m.type == HandoverMessage::Type::kHello) {
    m.reports = r.Uint("reports", {1, 255});
    r.RejectUnknown();
    if (!errors.empty()) return errors.ToError();
    if (fd_count != 0) {
      return PlainError("handover \"hello\" came with " + std::to_string(fd_count) +
                        " descriptors, not 0");
    }
    return m;
  }
  m.session = r.String("session", {1, kMaxHandoverSessionIdBytes, IsSessionId,
                                   "a session id ([A-Za-z0-9_-]{1,64})"});
  if (errors.empty() && m.type == HandoverMessage::Type::kOpen) {
    r.Require("allow");
    m.allow = r.StringArray("allow", kMaxAllowEntries, {1, 300});
    ReadEndpoints(r, &m.endpoints);
  }
  r.RejectUnknown();
  if (!errors.empty()) return errors.ToError();
  const size_t want =
      m.type == HandoverMessage::Type::kOpen ? kHandoverFdCount + m.endpoints.size() : 0;
  if (fd_count != want) {
    return PlainError("handover \"" + std::string(kTypeNames[static_cast<size_t>(m.type)]) +
                      "\" came with " + std::to_string(fd_count) + " descriptors, not " +
                      std::to_string(want));
  }
  return m;
}

Result<void> SendRecord(int socket, std::string_view record, std::span<const int> fds) {
  if (fds.size() > kMaxHandoverFds) return PlainError("too many descriptors for one record");
  iovec iov{const_cast<char*>(record.data()), record.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxHandoverFds)] = {};
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
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxHandoverFds)] = {};
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
    return PlainError("handover record came with more than " + std::to_string(kMaxHandoverFds) +
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

#include "control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace mp::testing {

Result<ControlClient> ControlClient::Connect(const std::string& path,
                                             std::chrono::milliseconds timeout) {
  ControlClient c;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    c.fd_.Reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!c.fd_) return ErrnoError("socket");
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (::connect(c.fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    if (std::chrono::steady_clock::now() > deadline) return ErrnoError("connect(" + path + ")");
    ::usleep(50 * 1000);  // the daemon is still starting
  }
  wire::Request hello;
  hello.id = 0;
  hello.body = wire::HelloRequest{wire::kProtoVersion, "mp-test/1"};
  MP_TRY(auto frame, wire::EncodeRequest(hello));
  MP_TRY(auto sent, wire::SendFrame(c.fd_.get(), frame));
  (void)sent;
  MP_TRY(auto msg, c.Receive(timeout));
  auto* ev = std::get_if<wire::Event>(&msg);
  if (ev == nullptr || !std::holds_alternative<wire::ServerHello>(*ev)) {
    return PlainError("expected the server hello");
  }
  c.hello_ = std::get<wire::ServerHello>(*ev);
  return c;
}

Result<wire::SupervisorMessage> ControlClient::Receive(std::chrono::milliseconds timeout) {
  struct pollfd pfd = {fd_.get(), POLLIN, 0};
  const int rc = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
  if (rc < 0) return ErrnoError("poll");
  if (rc == 0) return PlainError("timed out waiting for the supervisor");
  std::vector<uint8_t> buf(wire::kMaxFrameBytes);
  MP_TRY(auto got, wire::ReceiveFrame(fd_.get(), buf));
  if (got.status != wire::ReceiveStatus::kFrame)
    return PlainError("the supervisor closed the connection");
  return wire::DecodeSupervisorMessage(got.frame);
}

Result<wire::Response> ControlClient::Call(wire::RequestBody body,
                                           std::chrono::milliseconds timeout) {
  wire::Request req;
  req.id = next_id_++;
  req.body = std::move(body);
  MP_TRY(auto frame, wire::EncodeRequest(req));
  MP_TRY(auto sent, wire::SendFrame(fd_.get(), frame));
  (void)sent;
  for (;;) {
    MP_TRY(auto msg, Receive(timeout));
    if (auto* ev = std::get_if<wire::Event>(&msg)) {
      events_.push_back(std::move(*ev));
      continue;
    }
    auto& resp = std::get<wire::Response>(msg);
    if (resp.id == req.id) return resp;
  }
}

Result<wire::Event> ControlClient::NextEvent(std::chrono::milliseconds timeout) {
  if (!events_.empty()) {
    wire::Event e = std::move(events_.front());
    events_.pop_front();
    return e;
  }
  for (;;) {
    MP_TRY(auto msg, Receive(timeout));
    if (auto* ev = std::get_if<wire::Event>(&msg)) return std::move(*ev);
  }
}

Result<std::string> ControlClient::ReadAllOutput(const std::string& session) {
  std::string out;
  uint64_t since = 0;
  for (;;) {
    auto r =
        Call(wire::ReadOutputRequest{session, since, static_cast<uint32_t>(wire::kMaxChunkBytes)});
    if (!r) return r.error();
    auto* o = std::get_if<wire::OutputRead>(&r->body);
    if (o == nullptr) {
      return PlainError("read_output " + session + " at " + std::to_string(since) + " failed");
    }
    if (!o->gaps.empty()) {
      return PlainError("the output of " + session + " has a gap at " + std::to_string(since));
    }
    out.append(o->data.begin(), o->data.end());
    if (o->next == since) return out;
    since = o->next;
  }
}

}  // namespace mp::testing

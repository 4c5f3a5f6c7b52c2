// A blocking client of the supervisor's control socket, for privileged tests
// (the API's real client is asynchronous). Not thread-safe.
#pragma once

#include <chrono>
#include <deque>
#include <optional>
#include <string>

#include "common/messages.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::testing {

class ControlClient {
 public:
  // Connects and exchanges hello.
  static Result<ControlClient> Connect(
      const std::string& path, std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // Sends a request (assigning its id) and waits for its response; events
  // that arrive meanwhile are kept for NextEvent().
  Result<wire::Response> Call(wire::RequestBody body,
                              std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // The next event, or an error on timeout / EOF.
  Result<wire::Event> NextEvent(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // A session's whole output from offset 0 as the supervisor holds it (read_output until it
  // stops growing); a gap or a failed read is an error naming the offset.
  Result<std::string> ReadAllOutput(const std::string& session);
  // Reads nothing for a while: lets the outbox fill (slow-reader tests).
  int fd() const { return fd_.get(); }
  const wire::ServerHello& hello() const { return hello_; }

 private:
  Result<wire::SupervisorMessage> Receive(std::chrono::milliseconds timeout);
  UniqueFd fd_;
  uint64_t next_id_ = 1;
  wire::ServerHello hello_;
  std::deque<wire::Event> events_;
};

}  // namespace mp::testing

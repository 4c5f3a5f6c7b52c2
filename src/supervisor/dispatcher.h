// Dispatcher: decoded control requests → SessionManager calls → responses.
// It makes no syscalls (style.md example 14), so fuzzing the wire codec, the
// request decoder and this file with a fake manager covers the whole input
// surface. Also adapts the ControlServer to the manager's EventSink.
// Supervisor only; runs on the event loop's thread.
#pragma once

#include <functional>

#include "supervisor/control_server.h"
#include "supervisor/session_manager.h"

namespace mp::supervisor {

class Dispatcher : public RequestHandler, public EventSink {
 public:
  Dispatcher() = default;
  // Both must outlive the dispatcher; set before the loop runs.
  void Attach(ControlServer* server, SessionManager* manager) {
    server_ = server;
    manager_ = manager;
  }

  // Called before each spawn request goes to the manager (the daemon re-reads the bind
  // guard's port sysctls there); unset: nothing.
  void SetBeforeSpawn(std::function<void()> before_spawn) {
    before_spawn_ = std::move(before_spawn);
  }

  void OnRequest(const PeerInfo& peer, const wire::Request& request) override;
  void OnDisconnect(const PeerInfo& peer) override;
  void OnDrained(uint64_t connection);

  bool CanSend(uint64_t connection) const override;
  void Send(uint64_t connection, const wire::Event& event) override;

 private:
  ControlServer* server_ = nullptr;
  SessionManager* manager_ = nullptr;
  std::function<void()> before_spawn_;
};

}  // namespace mp::supervisor

// Fan-out of live session output from the one supervisor link to the WebSocket clients of
// monkeyproof-api. The hub holds one supervisor subscription per session that has a client in
// live mode (a client that lags or resumes catches up on its own with read_output, see
// ws_session.h) and forwards that session's events to each of its clients; it stores no
// output. While no client of a session is live the subscription is dropped, so output that
// only catching-up clients want crosses the control socket once, not twice. Runs in
// monkeyproof-api on the io_context thread; not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/messages.h"
#include "http/supervisor_link.h"

namespace mp::http {

class Metrics;

// A WebSocket client as the hub sees it.
class HubClient {
 public:
  virtual ~HubClient() = default;
  virtual void OnOutput(const wire::OutputEvent& event) = 0;
  virtual void OnGap(const wire::GapEvent& event) = 0;
  virtual void OnExit(const wire::EndRecord& end) = 0;
  // The link dropped (events may have been missed) / came back (catch up from your offset).
  virtual void OnLinkDown() = 0;
  virtual void OnLinkUp() = 0;
};

class SessionHub : public LinkListener {
 public:
  SessionHub(SupervisorLink& link, Metrics& metrics) : link_(link), metrics_(metrics) {}

  // Registers a client of `session`; the hub keeps a weak reference. A client starts out not
  // live: it reads what it needs first.
  void Attach(const std::string& session, const std::shared_ptr<HubClient>& client);
  void Detach(const std::string& session, const HubClient* client);
  // `client` has caught up to `next` and takes live output from now on: the first live
  // client subscribes the session from `next`, so nothing after it is missed.
  void GoLive(const std::string& session, const HubClient* client, uint64_t next);
  // `client` reads on its own again (it lagged, the link dropped, or it finished); the last
  // one to leave drops the subscription.
  void LeaveLive(const std::string& session, const HubClient* client);
  // Whether the hub holds a subscription of `session` (for tests).
  [[nodiscard]] bool subscribed(const std::string& session) const;
  // WebSocket clients attached to `session` (SessionInfo.wsClients).
  [[nodiscard]] uint32_t ClientCount(const std::string& session) const;
  [[nodiscard]] size_t sessions() const { return channels_.size(); }

  void OnLinkUp(const wire::ServerHello& hello) override;
  void OnLinkDown() override;
  void OnEvent(const wire::Event& event) override;

 private:
  struct Channel {
    std::vector<std::weak_ptr<HubClient>> clients;
    std::vector<const HubClient*> live;  // clients in live mode, a subset of `clients`
    bool subscribed = false;             // a subscribe was sent and no unsubscribe since
  };
  void Subscribe(const std::string& session, Channel& channel, uint64_t since);
  void Unsubscribe(const std::string& session, Channel& channel);
  template <typename F>
  void ForEachClient(const std::string& session, F&& f);

  SupervisorLink& link_;
  Metrics& metrics_;
  bool was_up_ = false;  // the link has been up before: a later OnLinkUp is a reconnect
  std::unordered_map<std::string, Channel> channels_;
};

}  // namespace mp::http

#include "http/session_hub.h"

#include <algorithm>
#include <cstdio>

#include "http/metrics.h"

namespace mp::http {

void SessionHub::Attach(const std::string& session, const std::shared_ptr<HubClient>& client) {
  auto [it, inserted] = channels_.try_emplace(session);
  it->second.clients.push_back(client);
  if (inserted) Subscribe(session);
}

void SessionHub::Detach(const std::string& session, const HubClient* client) {
  auto it = channels_.find(session);
  if (it == channels_.end()) return;
  auto& clients = it->second.clients;
  clients.erase(std::remove_if(clients.begin(), clients.end(),
                               [client](const std::weak_ptr<HubClient>& w) {
                                 auto c = w.lock();
                                 return !c || c.get() == client;
                               }),
                clients.end());
  if (!clients.empty()) return;
  channels_.erase(it);
  if (link_.up()) {
    link_.Call(wire::UnsubscribeRequest{session}, [](Result<wire::Response>) {
      // Nothing to do either way: not_found means the record is gone, and a dropped link has
      // dropped the subscription with it.
    });
  }
}

uint32_t SessionHub::ClientCount(const std::string& session) const {
  auto it = channels_.find(session);
  if (it == channels_.end()) return 0;
  return static_cast<uint32_t>(std::count_if(it->second.clients.begin(), it->second.clients.end(),
                                             [](const auto& w) { return !w.expired(); }));
}

void SessionHub::Subscribe(const std::string& session) {
  if (!link_.up()) return;  // OnLinkUp subscribes every channel
  link_.Call(wire::SubscribeRequest{session, std::nullopt}, [session](Result<wire::Response> r) {
    if (r && !r->ok()) {
      // The session's clients learn of an unknown session from their own reads.
      std::fprintf(stderr, "monkeyproof-api: subscribe %s: %s\n", session.c_str(),
                   std::get<wire::ErrorBody>(r->body).message.c_str());
    }
  });
}

template <typename F>
void SessionHub::ForEachClient(const std::string& session, F&& f) {
  auto it = channels_.find(session);
  if (it == channels_.end()) return;
  // Copy first: a client may detach (and so edit the list) from inside its handler.
  std::vector<std::shared_ptr<HubClient>> live;
  for (const auto& w : it->second.clients) {
    if (auto c = w.lock()) live.push_back(std::move(c));
  }
  for (const auto& c : live) f(*c);
}

void SessionHub::OnLinkUp(const wire::ServerHello&) {
  if (was_up_) metrics_.CountSupervisorReconnect();
  was_up_ = true;
  for (const auto& [session, channel] : channels_) Subscribe(session);
  std::vector<std::shared_ptr<HubClient>> all;
  for (const auto& [session, channel] : channels_) {
    for (const auto& w : channel.clients) {
      if (auto c = w.lock()) all.push_back(std::move(c));
    }
  }
  for (const auto& c : all) c->OnLinkUp();
}

void SessionHub::OnLinkDown() {
  std::vector<std::shared_ptr<HubClient>> all;
  for (const auto& [session, channel] : channels_) {
    for (const auto& w : channel.clients) {
      if (auto c = w.lock()) all.push_back(std::move(c));
    }
  }
  for (const auto& c : all) c->OnLinkDown();
}

void SessionHub::OnEvent(const wire::Event& event) {
  if (const auto* output = std::get_if<wire::OutputEvent>(&event)) {
    ForEachClient(output->session, [&](HubClient& c) { c.OnOutput(*output); });
  } else if (const auto* gap = std::get_if<wire::GapEvent>(&event)) {
    ForEachClient(gap->session, [&](HubClient& c) { c.OnGap(*gap); });
  } else if (const auto* exit = std::get_if<wire::ExitEvent>(&event)) {
    ForEachClient(exit->session, [&](HubClient& c) { c.OnExit(exit->end); });
  } else if (const auto* lagged = std::get_if<wire::LaggedEvent>(&event)) {
    // The supervisor dropped live output for us: every client of the session catches up.
    ForEachClient(lagged->session, [&](HubClient& c) {
      c.OnLinkDown();
      c.OnLinkUp();
    });
  }
  // state events carry nothing a WebSocket client is sent.
}

}  // namespace mp::http

#include "http/session_hub.h"

#include <algorithm>

#include "common/log.h"
#include "http/metrics.h"

namespace mp::http {

void SessionHub::Attach(const std::string& session, const std::shared_ptr<HubClient>& client) {
  channels_[session].clients.push_back(client);
}

void SessionHub::Detach(const std::string& session, const HubClient* client) {
  auto it = channels_.find(session);
  if (it == channels_.end()) return;
  Channel& channel = it->second;
  auto& clients = channel.clients;
  clients.erase(std::remove_if(clients.begin(), clients.end(),
                               [client](const std::weak_ptr<HubClient>& w) {
                                 auto c = w.lock();
                                 return !c || c.get() == client;
                               }),
                clients.end());
  std::erase(channel.live, client);
  if (channel.live.empty()) Unsubscribe(session, channel);
  if (clients.empty()) channels_.erase(it);
}

void SessionHub::GoLive(const std::string& session, const HubClient* client, uint64_t next) {
  auto it = channels_.find(session);
  if (it == channels_.end()) return;
  Channel& channel = it->second;
  if (std::find(channel.live.begin(), channel.live.end(), client) == channel.live.end()) {
    channel.live.push_back(client);
  }
  if (!channel.subscribed) Subscribe(session, channel, next);
}

void SessionHub::LeaveLive(const std::string& session, const HubClient* client) {
  auto it = channels_.find(session);
  if (it == channels_.end()) return;
  Channel& channel = it->second;
  std::erase(channel.live, client);
  if (channel.live.empty()) Unsubscribe(session, channel);
}

bool SessionHub::subscribed(const std::string& session) const {
  auto it = channels_.find(session);
  return it != channels_.end() && it->second.subscribed;
}

uint32_t SessionHub::ClientCount(const std::string& session) const {
  auto it = channels_.find(session);
  if (it == channels_.end()) return 0;
  return static_cast<uint32_t>(std::count_if(it->second.clients.begin(), it->second.clients.end(),
                                             [](const auto& w) { return !w.expired(); }));
}

void SessionHub::Subscribe(const std::string& session, Channel& channel, uint64_t since) {
  if (!link_.up()) return;  // the live client is told of the link and catches up again
  channel.subscribed = true;
  link_.Call(wire::SubscribeRequest{session, since}, [this, session](Result<wire::Response> r) {
    if (!r || r->ok()) return;  // a dropped link tells every client itself
    // Live clients would wait for events that never come: they read on their own instead,
    // and learn from their reads what is wrong (an unknown session, say).
    common::Log(common::LogLevel::kWarning,
                "subscribe " + session + ": " + std::get<wire::ErrorBody>(r->body).message);
    auto it = channels_.find(session);
    if (it == channels_.end()) return;
    it->second.subscribed = false;
    ForEachClient(session, [](HubClient& c) {
      c.OnLinkDown();
      c.OnLinkUp();
    });
  });
}

void SessionHub::Unsubscribe(const std::string& session, Channel& channel) {
  if (!channel.subscribed) return;
  channel.subscribed = false;
  if (!link_.up()) return;  // a dropped link has dropped the subscription with it
  link_.Call(wire::UnsubscribeRequest{session}, [](Result<wire::Response>) {
    // Nothing to do either way: not_found means the record is gone.
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
  // The new connection holds no subscription: clients catch up and subscribe as they go live.
  for (auto& [session, channel] : channels_) {
    channel.subscribed = false;
    channel.live.clear();
  }
  std::vector<std::shared_ptr<HubClient>> all;
  for (const auto& [session, channel] : channels_) {
    for (const auto& w : channel.clients) {
      if (auto c = w.lock()) all.push_back(std::move(c));
    }
  }
  for (const auto& c : all) c->OnLinkUp();
}

void SessionHub::OnLinkDown() {
  for (auto& [session, channel] : channels_) {
    channel.subscribed = false;
    channel.live.clear();
  }
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

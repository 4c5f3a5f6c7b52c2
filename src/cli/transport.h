// The `monkeyproof` client's network transport: synchronous HTTP/1.1 requests over one
// keep-alive connection, and a WebSocket client with a small event loop (outgoing queue,
// signals, work posted from other threads, timed waits), over plain TCP or, for https:// URLs,
// TLS 1.2+ that verifies the server's certificate and name (http/client_stream.h carries both).
// transport.cc is the only file of the CLI that includes Boost.Beast/Asio (their compile cost
// is high). Runs in the CLI only.
// Thread safety: an object is used from one thread, except WsClient::Post, which any thread
// may call while the WsClient exists.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cli/config.h"
#include "cli/protocol.h"
#include "common/result.h"

namespace mp::cli {

struct TransportTimeouts {
  std::chrono::milliseconds connect{10'000};  // TCP connect (per resolved address set)
  std::chrono::milliseconds request{60'000};  // write a request and read the whole answer
  std::chrono::milliseconds ws_idle{30'000};  // no frame for this long: ping; twice: give up
};

// Failures that are not HTTP answers (refused, timed out, reset, bad HTTP, a TLS handshake that
// fails, e.g. "TLS handshake with https://h:3443 failed: certificate verify failed: unable to
// get local issuer certificate (give the server's CA with --ca-file)") come back as an
// Error whose `what` is a complete sentence for the user, e.g. "cannot connect to
// http://127.0.0.1:3200: Connection refused (is monkeyproof-api running?)"; errnum carries the
// errno when there is one.
class HttpClient {
 public:
  HttpClient(ServerUrl url, std::string token, ClientTls tls = {}, TransportTimeouts timeouts = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends `method prefix+path_and_query` with the bearer token and reads the answer, whatever
  // its status. An idle keep-alive connection the server closed is retried once on a fresh
  // one for GET/DELETE; POSTs always go out on a fresh connection so a request is never sent
  // twice.
  Result<HttpResponse> Request(std::string_view method, std::string_view path_and_query,
                               std::string_view body = {},
                               std::string_view content_type = "application/json");

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One WebSocket connection at a time (Connect again after a drop), driven by a loop that runs
// inside Connect(), Run() and Wait(). Messages queued with Send*() while disconnected go out
// after the next successful Connect().
class WsClient {
 public:
  WsClient(ServerUrl url, std::string token, ClientTls tls = {}, TransportTimeouts timeouts = {});
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  // Opens the connection and sends the upgrade for prefix+path_and_query (the token goes in
  // the Authorization header). Returns the server's answer: status 101 means connected; any
  // other status (with its body) means the server declined and nothing is connected.
  Result<HttpResponse> Connect(std::string_view path_and_query);

  // Delivers every text frame to on_text until the connection ends: Ok when Stop() was called
  // or the server closed the connection; an Error when it broke (reset, timeout). Binary
  // frames are ignored.
  using TextHandler = std::function<void(std::string_view)>;
  Result<void> Run(const TextHandler& on_text);

  // Queue a frame; on_sent (optional) runs once it has been handed to the kernel, or when it
  // was being written as the connection broke.
  void SendText(std::string text, std::function<void()> on_sent = {});
  void SendBinary(std::string data, std::function<void()> on_sent = {});

  // Ends Run(): frames already queued are sent first, then the connection is closed (1000).
  void Stop();

  // Runs fn on the loop's thread during Connect/Run/Wait. Callable from any thread.
  void Post(std::function<void()> fn);

  // Calls handler(signo) on the loop's thread for each of `signals` (instead of their default
  // action) for the rest of this object's life.
  void HandleSignals(const std::vector<int>& signals, std::function<void(int)> handler);

  // Runs the loop (posted work, signals) for `duration`, or until Interrupt().
  void Wait(std::chrono::milliseconds duration);
  // Cuts the current Wait() short.
  void Interrupt();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mp::cli

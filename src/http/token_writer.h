// Makes mints and revocations of scoped tokens durable off the io_context thread: the store's
// file is rewritten and fsynced (hundreds of milliseconds on a slow disk or under emulation),
// and nothing else of the API may wait for that. Requests queue here in arrival order and go
// one at a time: each is prepared on the io_context thread (TokenStore::Prepare*), written on
// this object's thread, then committed and answered on the io_context thread, so that every
// write holds exactly the changes answered before it plus its own, a failed write changes
// nothing, and the answer leaves only once the change is durable. Verification and listing
// never wait: they read the committed records. Runs in monkeyproof-api: Mint, Revoke and the
// callbacks on the io_context thread; the writes on one thread of its own.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>

#include "common/result.h"
#include "http/scoped_tokens.h"

namespace mp::http {

class TokenWriter {
 public:
  explicit TokenWriter(boost::asio::io_context& io);
  // Waits for a write in progress; callbacks not yet run are dropped with the io_context.
  ~TokenWriter();
  TokenWriter(const TokenWriter&) = delete;
  TokenWriter& operator=(const TokenWriter&) = delete;

  // TokenStore::Mint, with the write on the writer thread; `done` gets Mint's result. The
  // callbacks must keep alive what they use (the routes hold their call, and so the context
  // that holds this writer and `store`).
  void Mint(TokenStore& store, TokenScope scope, uint64_t ttl_seconds, std::string created_by,
            uint64_t now_ms, std::function<void(Result<MintedToken>)> done);
  // TokenStore::Revoke, likewise.
  void Revoke(TokenStore& store, std::string id, uint64_t now_ms,
              std::function<void(Result<bool>)> done);

  // Requests queued or in progress (io_context thread).
  [[nodiscard]] size_t pending() const { return queue_.size() + (busy_ ? 1 : 0); }

 private:
  // io_context thread: runs the next queued request unless one is in progress.
  void Next();
  // Hands `write` to the writer thread; `then` gets its result on the io_context thread.
  void Write(std::function<Result<void>()> write, std::function<void(Result<void>)> then);
  void RunThread();

  boost::asio::io_context& io_;
  std::deque<std::function<void()>> queue_;  // io_context thread
  bool busy_ = false;                        // io_context thread

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;  // for the writer thread, under mu_
  bool closing_ = false;                    // under mu_
  std::thread thread_;
};

}  // namespace mp::http

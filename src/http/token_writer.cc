#include "http/token_writer.h"

#include <memory>
#include <optional>
#include <utility>

#include <boost/asio/post.hpp>

namespace mp::http {

TokenWriter::TokenWriter(boost::asio::io_context& io) : io_(io) {
  thread_ = std::thread([this] { RunThread(); });
}

TokenWriter::~TokenWriter() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void TokenWriter::RunThread() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return closing_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // closing, nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

void TokenWriter::Write(std::function<Result<void>()> write,
                        std::function<void(Result<void>)> then) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back([this, write = std::move(write), then = std::move(then)]() mutable {
      Result<void> result = write();
      std::lock_guard done_lock(mu_);
      // Going away: the io_context may be too; the answer is dropped with the request.
      if (closing_) return;
      boost::asio::post(io_, [then = std::move(then), result = std::move(result)]() mutable {
        then(std::move(result));
      });
    });
  }
  wake_.notify_one();
}

void TokenWriter::Next() {
  if (busy_ || queue_.empty()) return;
  busy_ = true;
  auto start = std::move(queue_.front());
  queue_.pop_front();
  start();
}

void TokenWriter::Mint(TokenStore& store, TokenScope scope, uint64_t ttl_seconds,
                       std::string created_by, uint64_t now_ms,
                       std::function<void(Result<MintedToken>)> done) {
  queue_.push_back([this, &store, scope = std::move(scope), ttl_seconds,
                    created_by = std::move(created_by), now_ms, done = std::move(done)]() mutable {
    // Prepared now, after the changes before it were committed: its checks and text see them.
    auto prepared = store.PrepareMint(scope, ttl_seconds, std::move(created_by), now_ms);
    if (!prepared) {
      busy_ = false;
      done(std::move(prepared).error());
      Next();
      return;
    }
    auto change = std::make_shared<TokenStore::Change>(std::move(*prepared));
    Write([write = store.write_function(), path = store.options().path,
           change] { return write(path, change->text); },
          [this, &store, change, done = std::move(done)](Result<void> written) {
            busy_ = false;
            if (!written) {
              // A token the file does not hold would not survive a restart: not minted.
              done(std::move(written).error().Wrap("mint scoped token"));
            } else {
              MintedToken minted{std::move(change->token), change->record};
              store.Commit(std::move(*change));
              done(std::move(minted));
            }
            Next();
          });
  });
  Next();
}

void TokenWriter::Revoke(TokenStore& store, std::string id, uint64_t now_ms,
                         std::function<void(Result<bool>)> done) {
  queue_.push_back([this, &store, id = std::move(id), now_ms, done = std::move(done)]() mutable {
    bool known = false;
    std::optional<TokenStore::Change> prepared = store.PrepareRevoke(id, now_ms, &known);
    if (!prepared) {
      busy_ = false;
      done(known);
      Next();
      return;
    }
    auto change = std::make_shared<TokenStore::Change>(std::move(*prepared));
    Write([write = store.write_function(), path = store.options().path,
           change] { return write(path, change->text); },
          [this, &store, change, id, done = std::move(done)](Result<void> written) {
            busy_ = false;
            if (!written) {
              // Memory follows the file: the token stays valid, as a restart would find it.
              done(std::move(written).error().Wrap("revoke token " + id));
            } else {
              store.Commit(std::move(*change));
              done(true);
            }
            Next();
          });
  });
  Next();
}

}  // namespace mp::http

// TokenWriter (http/token_writer.h): a mint's write runs on the writer's thread while the
// io_context serves other work, and is answered only once durable; a failed write mints
// nothing and revokes nothing; requests go in order, each write holding the ones before. The
// writes are held at will by an injected write function (a gate). The control runs the old
// path (the write on the io_context thread) under the same probe and sees the thread blocked.
// Then the same through the in-process API over TCP: GET /health is served while POST /tokens
// waits for its write. Temporary directories; any user.
#include "http/token_writer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "front_door_fixture.h"
#include "temp_dir.h"

namespace mp::http {
namespace {

using namespace testing_front_door;  // NOLINT(google-build-using-namespace): test fixture
using std::chrono::seconds;

constexpr uint64_t kNow = 1'800'000'000'000;

TokenScope ReadScope() {
  TokenScope s;
  s.sessions = {SessionScope::Kind::kOwner, "alice"};
  s.rights = static_cast<Rights>(Right::kRead);
  return s;
}

// Holds every write until Open(); says when one has begun.
class WriteGate {
 public:
  TokenStore::WriteFn Wrap(TokenStore::WriteFn real) {
    return [this, real](const std::string& path, const std::string& text) {
      {
        std::unique_lock lock(mu_);
        ++entered_;
        cv_.notify_all();
        cv_.wait(lock, [this] { return open_; });
      }
      return real(path, text);
    };
  }
  bool WaitEntered(int n = 1) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, seconds(20), [&] { return entered_ >= n; });
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool open_ = false;
};

// Runs `f` on `io`'s thread; false when it has not run within `limit` (it still runs later).
template <typename F>
bool OnIo(boost::asio::io_context& io, F f, std::chrono::milliseconds limit = seconds(20)) {
  auto done = std::make_shared<std::promise<void>>();
  auto ran = done->get_future();
  boost::asio::post(io, [f = std::move(f), done]() mutable {
    f();
    done->set_value();
  });
  return ran.wait_for(limit) == std::future_status::ready;
}

class TokenWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = TokenStore::Open({path_, 86400, 8});
    ASSERT_TRUE(s) << s.error().ToString();
    store_ = std::move(*s);
    real_ = store_.write_function();
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    gate_.Open();
    work_.reset();
    thread_.join();
  }

  test::TempDir dir_{"token-writer-test"};
  std::string path_ = dir_.path() + "/tokens.json";
  TokenStore store_;
  TokenStore::WriteFn real_;
  WriteGate gate_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      io_.get_executor()};
  TokenWriter writer_{io_};
  std::thread thread_;
};

// The mint's write is held; meanwhile the io_context thread runs other work, the mint is not
// answered and not in memory. Once the write is let through, it is answered, valid and in the
// file.
TEST_F(TokenWriterTest, TheIoThreadServesOthersWhileAMintIsWritten) {
  store_.set_write_function(gate_.Wrap(real_));
  std::promise<Result<MintedToken>> answer;
  auto answered = answer.get_future();
  ASSERT_TRUE(OnIo(io_, [&] {
    writer_.Mint(store_, ReadScope(), 60, "admin", kNow,
                 [&](Result<MintedToken> r) { answer.set_value(std::move(r)); });
  }));
  ASSERT_TRUE(gate_.WaitEntered());
  size_t size = 99;
  size_t pending = 0;
  EXPECT_TRUE(OnIo(io_, [&] {
    size = store_.size();
    pending = writer_.pending();
  })) << "the io_context thread was blocked by the write";
  EXPECT_EQ(size, 0u) << "committed before the write was durable";
  EXPECT_EQ(pending, 1u);
  EXPECT_EQ(answered.wait_for(seconds(0)), std::future_status::timeout)
      << "answered before the write was durable";
  gate_.Open();
  ASSERT_EQ(answered.wait_for(seconds(20)), std::future_status::ready);
  const Result<MintedToken> minted = answered.get();
  ASSERT_TRUE(minted) << minted.error().ToString();
  TokenVerdict verdict = TokenVerdict::kUnknown;
  ASSERT_TRUE(OnIo(io_, [&] { verdict = store_.Verify(minted->token, kNow + 1); }));
  EXPECT_EQ(verdict, TokenVerdict::kValid);
  EXPECT_EQ(TokenStore::Open({path_, 86400, 8})->Verify(minted->token, kNow + 1),
            TokenVerdict::kValid);
}

// Control: the old path, Mint with its write on the io_context thread, under the same probe:
// the other work does not run while the write is held.
TEST_F(TokenWriterTest, ControlTheWriteOnTheIoThreadBlocksIt) {
  store_.set_write_function(gate_.Wrap(real_));
  boost::asio::post(io_, [this] { (void)store_.Mint(ReadScope(), 60, "admin", kNow); });
  ASSERT_TRUE(gate_.WaitEntered());
  EXPECT_FALSE(OnIo(
      io_, [] {}, seconds(1)))
      << "the probe did not see the blocked thread";
  gate_.Open();
  EXPECT_TRUE(OnIo(io_, [] {}));
}

// A failed write mints nothing and revokes nothing: memory stays as the file is.
TEST_F(TokenWriterTest, FailedWritesChangeNothing) {
  auto call_mint = [&] {
    std::promise<Result<MintedToken>> answer;
    auto answered = answer.get_future();
    EXPECT_TRUE(OnIo(io_, [&] {
      writer_.Mint(store_, ReadScope(), 600, "admin", kNow,
                   [&](Result<MintedToken> r) { answer.set_value(std::move(r)); });
    }));
    EXPECT_EQ(answered.wait_for(seconds(20)), std::future_status::ready);
    return answered.get();
  };
  auto call_revoke = [&](const std::string& id) {
    std::promise<Result<bool>> answer;
    auto answered = answer.get_future();
    EXPECT_TRUE(OnIo(io_, [&] {
      writer_.Revoke(store_, id, kNow + 1, [&](Result<bool> r) { answer.set_value(std::move(r)); });
    }));
    EXPECT_EQ(answered.wait_for(seconds(20)), std::future_status::ready);
    return answered.get();
  };
  const TokenStore::WriteFn failing = [](const std::string&, const std::string&) -> Result<void> {
    return ErrnoError(ENOSPC, "write(token store)");
  };
  store_.set_write_function(failing);
  const auto refused = call_mint();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().errnum, ENOSPC);
  EXPECT_NE(refused.error().what.find("mint scoped token"), std::string::npos);
  size_t size = 99;
  ASSERT_TRUE(OnIo(io_, [&] { size = store_.size(); }));
  EXPECT_EQ(size, 0u);

  ASSERT_TRUE(OnIo(io_, [&] { store_.set_write_function(real_); }));
  const auto minted = call_mint();
  ASSERT_TRUE(minted) << minted.error().ToString();
  ASSERT_TRUE(OnIo(io_, [&] { store_.set_write_function(failing); }));
  const auto not_revoked = call_revoke(minted->record.id);
  ASSERT_FALSE(not_revoked);
  EXPECT_NE(not_revoked.error().what.find("revoke token " + minted->record.id), std::string::npos);
  TokenVerdict verdict = TokenVerdict::kUnknown;
  ASSERT_TRUE(OnIo(io_, [&] { verdict = store_.Verify(minted->token, kNow + 2); }));
  EXPECT_EQ(verdict, TokenVerdict::kValid);
  EXPECT_EQ(TokenStore::Open({path_, 86400, 8})->Verify(minted->token, kNow + 2),
            TokenVerdict::kValid);
  ASSERT_TRUE(OnIo(io_, [&] { store_.set_write_function(real_); }));
  const auto revoked = call_revoke(minted->record.id);
  ASSERT_TRUE(revoked);
  EXPECT_TRUE(*revoked);
  EXPECT_FALSE(*call_revoke("ffffffffffffffff"));
}

// Three requests queued at once go one at a time, in order: each write holds the changes
// answered before it, and the file ends as the answers say.
TEST_F(TokenWriterTest, RequestsGoInOrder) {
  std::mutex mu;
  std::vector<std::string> texts;
  store_.set_write_function([&](const std::string& path, const std::string& text) {
    {
      std::lock_guard lock(mu);
      texts.push_back(text);
    }
    return real_(path, text);
  });
  std::promise<void> all;
  std::vector<std::string> ids(2);
  std::vector<std::string> order;
  ASSERT_TRUE(OnIo(io_, [&] {
    writer_.Mint(store_, ReadScope(), 60, "admin", kNow, [&](Result<MintedToken> r) {
      ASSERT_TRUE(r);
      ids[0] = r->record.id;
      order.push_back("mint a");
    });
    writer_.Mint(store_, ReadScope(), 60, "admin", kNow, [&](Result<MintedToken> r) {
      ASSERT_TRUE(r);
      ids[1] = r->record.id;
      order.push_back("mint b");
    });
    // The id is known only once the first mint is answered: revoke whatever it minted.
    writer_.Revoke(store_, "0000000000000000", kNow, [&](Result<bool> r) {
      ASSERT_TRUE(r);
      order.push_back(*r ? "revoked?" : "unknown");
      writer_.Revoke(store_, ids[0], kNow + 5, [&](Result<bool> again) {
        ASSERT_TRUE(again);
        order.push_back(*again ? "revoke a" : "revoke a: unknown");
        all.set_value();
      });
    });
  }));
  ASSERT_EQ(all.get_future().wait_for(seconds(20)), std::future_status::ready);
  EXPECT_EQ(order, (std::vector<std::string>{"mint a", "mint b", "unknown", "revoke a"}));
  std::lock_guard lock(mu);
  ASSERT_EQ(texts.size(), 3u);  // an unknown id writes nothing
  EXPECT_EQ(texts[0].find(ids[1]), std::string::npos);
  EXPECT_NE(texts[1].find(ids[0]), std::string::npos);
  EXPECT_NE(texts[1].find(ids[1]), std::string::npos);
  EXPECT_NE(texts[2].find("revokedAt"), std::string::npos);
  auto reopened = TokenStore::Open({path_, 86400, 8});
  ASSERT_TRUE(reopened);
  EXPECT_EQ(reopened->Lookup(ids[0], kNow + 6), TokenVerdict::kRevoked);
  EXPECT_EQ(reopened->Lookup(ids[1], kNow + 6), TokenVerdict::kValid);
}

// Through the API: POST /tokens waits for its write, and GET /health on another connection is
// served meanwhile (with the write on the io_context thread, as before, it would wait too).
class TokenWriterServerTest : public HttpFrontDoorTest {
 protected:
  void TearDown() override {
    gate_.Open();  // a test that failed early leaves no write held
    HttpFrontDoorTest::TearDown();
  }
  WriteGate gate_;
};

TEST_F(TokenWriterServerTest, RequestsAreServedWhileAMintIsWritten) {
  test::TempDir dir("token-writer-server");
  ApiConfig config = Config();
  config.token_store = dir.path() + "/tokens.json";
  StartServer(config);
  WriteGate& gate = gate_;
  ASSERT_TRUE(OnIo(server_->io(), [&] {
    TokenStore& store = server_->context().token_store;
    store.set_write_function(gate.Wrap(store.write_function()));
  }));
  Client minting(port_, "127.0.0.1");
  ASSERT_TRUE(
      minting.Send(Request("POST", "/tokens", kToken, {},
                           R"({"sessions":"owner:alice","rights":["read"],"ttlSeconds":60})")));
  ASSERT_TRUE(gate.WaitEntered());
  EXPECT_EQ(Status("127.0.0.1", kToken), 200) << "a request waited for the token store's write";
  gate.Open();
  const Answer minted = minting.Read();
  EXPECT_EQ(minted.status, 201) << minted.error << minted.body;
  EXPECT_NE(minted.body.find("\"token\":\"mpt_"), std::string::npos) << minted.body;
}

}  // namespace
}  // namespace mp::http

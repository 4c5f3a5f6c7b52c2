// EventLoop (src/supervisor/event_loop.h): fd callbacks over pipes, removal inside one epoll_wait
// batch, timer order/cancel/re-arm, EINTR and signalfd. Signal tests run in a forked child so
// the test process keeps its signal mask and handlers. Unprivileged.
#include "supervisor/event_loop.h"

#include <fcntl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/unique_fd.h"

namespace mp::supervisor {
namespace {

using std::chrono::milliseconds;

std::unique_ptr<EventLoop> NewLoop() {
  auto loop = EventLoop::Create();
  EXPECT_TRUE(loop) << loop.error().ToString();
  return std::move(*loop);
}

std::pair<UniqueFd, UniqueFd> Pipe() {
  auto p = MakePipe(O_NONBLOCK);
  EXPECT_TRUE(p) << p.error().ToString();
  return std::move(*p);
}

void WriteByte(const UniqueFd& fd) { ASSERT_EQ(::write(fd.get(), "x", 1), 1); }

// A safety net so a broken loop fails the test instead of hanging it.
void StopAfter(EventLoop& loop, milliseconds after, bool* fired = nullptr) {
  loop.AddTimer(after, [&loop, fired] {
    if (fired != nullptr) *fired = true;
    loop.Stop();
  });
}

// Runs `body` in a forked child and returns its exit code (128 + signal if it was killed).
int RunInChild(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(EventLoopTest, CallsFdCallbackWithEvents) {
  auto loop = NewLoop();
  auto [r, w] = Pipe();
  uint32_t seen = 0;
  ASSERT_TRUE(loop->Add(r.get(), EPOLLIN, [&](uint32_t events) {
    seen = events;
    loop->Stop();
  }));
  WriteByte(w);
  bool timed_out = false;
  StopAfter(*loop, milliseconds(5000), &timed_out);
  ASSERT_TRUE(loop->Run());
  EXPECT_FALSE(timed_out);
  EXPECT_TRUE(seen & EPOLLIN);
}

TEST(EventLoopTest, ReportsHangUpOfPipeWriter) {
  auto loop = NewLoop();
  auto [r, w] = Pipe();
  uint32_t seen = 0;
  ASSERT_TRUE(loop->Add(r.get(), EPOLLIN, [&](uint32_t events) {
    seen = events;
    loop->Remove(r.get());
    loop->Stop();
  }));
  w.Reset();
  ASSERT_TRUE(loop->Run());
  EXPECT_TRUE(seen & EPOLLHUP);
}

TEST(EventLoopTest, AddTwiceAndModifyUnknownAreErrors) {
  auto loop = NewLoop();
  auto [r, w] = Pipe();
  ASSERT_TRUE(loop->Add(r.get(), EPOLLIN, [](uint32_t) {}));
  auto again = loop->Add(r.get(), EPOLLIN, [](uint32_t) {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().errnum, EEXIST);
  auto modify = loop->Modify(w.get(), EPOLLOUT);
  ASSERT_FALSE(modify);
  EXPECT_EQ(modify.error().errnum, ENOENT);
  EXPECT_EQ(loop->Add(-1, EPOLLIN, [](uint32_t) {}).error().errnum, EBADF);
  loop->Remove(w.get());  // unknown: no-op
  loop->Remove(r.get());
  EXPECT_TRUE(loop->Add(r.get(), EPOLLIN, [](uint32_t) {}));  // and back again
}

TEST(EventLoopTest, ModifyChangesInterest) {
  auto loop = NewLoop();
  auto [r, w] = Pipe();
  int out_calls = 0;
  // A pipe's write end is always writable, so EPOLLOUT fires on every wait until we drop it.
  ASSERT_TRUE(loop->Add(w.get(), EPOLLOUT, [&](uint32_t events) {
    EXPECT_TRUE(events & EPOLLOUT);
    ++out_calls;
    ASSERT_TRUE(loop->Modify(w.get(), 0));
  }));
  StopAfter(*loop, milliseconds(30));
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(out_calls, 1);
}

TEST(EventLoopTest, CallbackCanRemoveItself) {
  auto loop = NewLoop();
  auto [r, w] = Pipe();
  int calls = 0;
  ASSERT_TRUE(loop->Add(r.get(), EPOLLIN, [&](uint32_t) {
    ++calls;
    loop->Remove(r.get());  // destroys the registration of the callback now running
    // Level-triggered and never read: were it still registered, it would fire on every wait.
  }));
  WriteByte(w);
  StopAfter(*loop, milliseconds(30));
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(calls, 1);
}

TEST(EventLoopTest, RemovingAnFdPendingInTheSameBatchSkipsIt) {
  auto loop = NewLoop();
  auto [r1, w1] = Pipe();
  auto [r2, w2] = Pipe();
  // Both readable before Run: one epoll_wait returns both. Whichever runs first removes both,
  // so exactly one callback may run.
  int calls = 0;
  auto remove_both = [&](uint32_t) {
    ++calls;
    loop->Remove(r1.get());
    loop->Remove(r2.get());
  };
  ASSERT_TRUE(loop->Add(r1.get(), EPOLLIN, remove_both));
  ASSERT_TRUE(loop->Add(r2.get(), EPOLLIN, remove_both));
  WriteByte(w1);
  WriteByte(w2);
  StopAfter(*loop, milliseconds(30));
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(calls, 1);
}

TEST(EventLoopTest, StaleEventIsNotDeliveredToAnFdThatReusedTheNumber) {
  auto loop = NewLoop();
  auto [r1, w1] = Pipe();
  auto [r2, w2] = Pipe();
  auto [r3, w3] = Pipe();  // stays empty: never readable
  int first_calls = 0;
  int newcomer_calls = 0;
  // Whichever of r1/r2 runs first replaces the other (whose event is pending in this batch) by
  // the empty pipe under the same fd number, registered anew. Dispatching by fd number alone
  // would hand the stale EPOLLIN to the newcomer.
  auto make = [&](UniqueFd& self, UniqueFd& other) {
    return [&](uint32_t) {
      ++first_calls;
      const int number = other.get();
      loop->Remove(number);
      other.Reset();
      ASSERT_EQ(::dup3(r3.get(), number, O_CLOEXEC), number);
      other.Reset(number);
      ASSERT_TRUE(loop->Add(number, EPOLLIN, [&](uint32_t) { ++newcomer_calls; }));
      loop->Remove(self.get());
    };
  };
  ASSERT_TRUE(loop->Add(r1.get(), EPOLLIN, make(r1, r2)));
  ASSERT_TRUE(loop->Add(r2.get(), EPOLLIN, make(r2, r1)));
  WriteByte(w1);
  WriteByte(w2);
  StopAfter(*loop, milliseconds(30));
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(newcomer_calls, 0);
}

TEST(EventLoopTest, CallbackCanAddAnFd) {
  auto loop = NewLoop();
  auto [r1, w1] = Pipe();
  auto [r2, w2] = Pipe();
  bool second = false;
  ASSERT_TRUE(loop->Add(r1.get(), EPOLLIN, [&](uint32_t) {
    loop->Remove(r1.get());
    ASSERT_TRUE(loop->Add(r2.get(), EPOLLIN, [&](uint32_t) {
      second = true;
      loop->Stop();
    }));
    WriteByte(w2);
  }));
  WriteByte(w1);
  bool timed_out = false;
  StopAfter(*loop, milliseconds(5000), &timed_out);
  ASSERT_TRUE(loop->Run());
  EXPECT_TRUE(second);
  EXPECT_FALSE(timed_out);
}

TEST(EventLoopTest, TimersFireInDueOrder) {
  auto loop = NewLoop();
  std::vector<int> order;
  loop->AddTimer(milliseconds(30), [&] {
    order.push_back(30);
    loop->Stop();
  });
  loop->AddTimer(milliseconds(10), [&] { order.push_back(10); });
  loop->AddTimer(milliseconds(20), [&] { order.push_back(20); });
  // Same due time: insertion order.
  const auto when = EventLoop::Clock::now() + milliseconds(15);
  loop->AddTimer(when, [&] { order.push_back(151); });
  loop->AddTimer(when, [&] { order.push_back(152); });
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(order, (std::vector<int>{10, 151, 152, 20, 30}));
}

TEST(EventLoopTest, TimerInThePastFiresAtOnce) {
  // "At once" as an order, not a duration: the past timer fires before one due in 50 ms, which
  // stops the loop. A past deadline armed as a zero timerfd value would disarm it instead.
  auto loop = NewLoop();
  std::vector<std::string> order;
  loop->AddTimer(EventLoop::Clock::now() - milliseconds(1000), [&] { order.push_back("past"); });
  loop->AddTimer(milliseconds(50), [&] {
    order.push_back("later");
    loop->Stop();
  });
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(order, (std::vector<std::string>{"past", "later"}));
}

TEST(EventLoopTest, EarlierTimerReArmsTheTimerfd) {
  auto loop = NewLoop();
  bool late_fired = false;
  const auto late = EventLoop::Clock::now() + milliseconds(10000);
  loop->AddTimer(late, [&] { late_fired = true; });
  bool early_fired = false;
  loop->AddTimer(milliseconds(5), [&] {
    early_fired = true;
    loop->Stop();
  });
  ASSERT_TRUE(loop->Run());
  // Without the re-arm the loop sleeps until the 10 s timer is due (an event, not a speed).
  EXPECT_LT(EventLoop::Clock::now(), late) << "the timerfd kept the later deadline";
  EXPECT_TRUE(early_fired);
  EXPECT_FALSE(late_fired);
}

TEST(EventLoopTest, CancelledTimersDoNotFire) {
  auto loop = NewLoop();
  bool cancelled_fired = false;
  bool cancelled_in_batch_fired = false;
  const EventLoop::TimerId a = loop->AddTimer(milliseconds(5), [&] { cancelled_fired = true; });
  loop->CancelTimer(a);
  loop->CancelTimer(a);       // twice: no-op
  loop->CancelTimer(999999);  // unknown: no-op
  // Two timers due in the same round: the first cancels the second.
  const auto when = EventLoop::Clock::now() + milliseconds(10);
  EventLoop::TimerId second = 0;
  loop->AddTimer(when, [&] { loop->CancelTimer(second); });
  second = loop->AddTimer(when, [&] { cancelled_in_batch_fired = true; });
  StopAfter(*loop, milliseconds(40));
  ASSERT_TRUE(loop->Run());
  EXPECT_FALSE(cancelled_fired);
  EXPECT_FALSE(cancelled_in_batch_fired);
}

TEST(EventLoopTest, CancellingTheOnlyTimerLeavesTheLoopIdle) {
  auto loop = NewLoop();
  auto [r, w] = Pipe();
  bool fired = false;
  const EventLoop::TimerId id = loop->AddTimer(milliseconds(1), [&] { fired = true; });
  loop->CancelTimer(id);
  // Nothing else is due; the pipe stops the loop after a later timer writes to it.
  ASSERT_TRUE(loop->Add(r.get(), EPOLLIN, [&](uint32_t) { loop->Stop(); }));
  loop->AddTimer(milliseconds(20), [&] { WriteByte(w); });
  ASSERT_TRUE(loop->Run());
  EXPECT_FALSE(fired);
}

TEST(EventLoopTest, TimerCanReArmItself) {
  auto loop = NewLoop();
  int ticks = 0;
  std::function<void()> tick = [&] {
    if (++ticks == 5) {
      loop->Stop();
      return;
    }
    loop->AddTimer(milliseconds(0), tick);  // zero delay: next round, never this one
  };
  loop->AddTimer(milliseconds(1), tick);
  bool timed_out = false;
  StopAfter(*loop, milliseconds(5000), &timed_out);
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(ticks, 5);
  EXPECT_FALSE(timed_out);
}

TEST(EventLoopTest, StopBeforeRunReturnsAtOnceAndRunCanBeCalledAgain) {
  auto loop = NewLoop();
  loop->Stop();
  ASSERT_TRUE(loop->Run());
  int fired = 0;
  loop->AddTimer(milliseconds(1), [&] {
    ++fired;
    loop->Stop();
  });
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(fired, 1);
}

TEST(EventLoopTest, HandleSignalsRefusesUnblockableSignals) {
  auto loop = NewLoop();
  auto r = loop->HandleSignals({SIGKILL}, [](int) {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum, EINVAL);
}

// In a child: blocking signals and installing handlers must not leak into the test process.
TEST(EventLoopTest, DeliversSignalsThroughSignalfd) {
  const int rc = RunInChild([] {
    auto created = EventLoop::Create();
    if (!created) return 10;
    EventLoop& loop = **created;
    std::vector<int> got;
    auto handled = loop.HandleSignals({SIGUSR1}, [&](int signo) { got.push_back(signo); });
    if (!handled) return 11;
    // A second call adds a signal and replaces the callback.
    handled = loop.HandleSignals({SIGUSR2}, [&](int signo) {
      got.push_back(signo);
      if (got.size() == 2) loop.Stop();
    });
    if (!handled) return 12;
    sigset_t now;
    sigprocmask(SIG_BLOCK, nullptr, &now);
    if (!sigismember(&now, SIGUSR1) || !sigismember(&now, SIGUSR2)) return 13;
    // Blocked, so raise() only queues them; without the signalfd they would kill the child.
    raise(SIGUSR1);
    raise(SIGUSR2);
    bool timed_out = false;
    StopAfter(loop, milliseconds(5000), &timed_out);
    if (!loop.Run()) return 14;
    if (timed_out) return 15;
    std::sort(got.begin(), got.end());
    return got == std::vector<int>{SIGUSR1, SIGUSR2} ? 0 : 16;
  });
  EXPECT_EQ(rc, 0);
}

std::atomic<int> g_alarms{0};
void OnAlarm(int) { g_alarms.fetch_add(1); }

TEST(EventLoopTest, RunRetriesEintr) {
  const int rc = RunInChild([] {
    auto created = EventLoop::Create();
    if (!created) return 10;
    EventLoop& loop = **created;
    // An ordinary handler (not routed to a signalfd): epoll_wait fails with EINTR each time.
    struct sigaction sa {};
    sa.sa_handler = OnAlarm;
    if (sigaction(SIGALRM, &sa, nullptr) != 0) return 11;
    struct itimerval every_2ms {};
    every_2ms.it_interval.tv_usec = 2000;
    every_2ms.it_value.tv_usec = 2000;
    if (setitimer(ITIMER_REAL, &every_2ms, nullptr) != 0) return 12;
    bool stopped = false;
    loop.AddTimer(milliseconds(60), [&] {
      stopped = true;
      loop.Stop();
    });
    const auto ran = loop.Run();
    struct itimerval off {};
    setitimer(ITIMER_REAL, &off, nullptr);
    if (!ran) return 13;
    if (!stopped) return 14;
    return g_alarms.load() > 0 ? 0 : 15;
  });
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace mp::supervisor

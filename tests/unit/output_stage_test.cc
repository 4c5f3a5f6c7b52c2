// OutputStage and RecoverStaged: a chunk moved from a pipe into the staging memfd, and the
// decision a restarted supervisor takes for what a killed one left staged: append it (killed
// before the append), drop it (killed after it), finish a torn record, write past a lost tail
// with a gap, refuse what the log contradicts. Each state is made as a kill leaves it (the
// steps run up to the kill, a torn record written by hand), with a real pipe and memfd and a
// transcript in an mkdtemp directory under /tmp. A terminal's chunk goes through its queue
// first (FillPtyQueue), with a real PTY pair (posix_openpt). Runs as any user.
#include "supervisor/output_stage.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "supervisor/output_log.h"

namespace mp::supervisor {
namespace {

using wire::OutputStream;
using Outcome = StageRecovery::Outcome;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/mp-output-stage-test-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    r.Reset(fds[0]);
    w.Reset(fds[1]);
  }
  void Write(const std::string& s) {
    ASSERT_EQ(::write(w.get(), s.data(), s.size()), static_cast<ssize_t>(s.size()));
  }
  UniqueFd r, w;
};

std::string Pattern(size_t n, size_t from = 0) {
  std::string s;
  for (size_t i = from; i < from + n; ++i) s += static_cast<char>('a' + i % 23);
  return s;
}

// The whole log from 0; "<gap a-b>" where it holds nothing.
std::string ReadAll(const OutputLog& log) {
  std::string out;
  uint64_t pos = 0;
  while (pos < log.total()) {
    auto r = log.Read(pos, static_cast<uint32_t>(wire::kMaxChunkBytes));
    EXPECT_TRUE(r) << r.error().ToString();
    if (!r || r->next <= pos) break;
    // Chunks and gaps in offset order.
    std::vector<std::pair<uint64_t, std::string>> pieces;
    size_t at = 0;
    for (const auto& c : r->chunks) {
      pieces.emplace_back(c.offset,
                          std::string(r->data.begin() + static_cast<ptrdiff_t>(at),
                                      r->data.begin() + static_cast<ptrdiff_t>(at + c.length)));
      at += c.length;
    }
    for (const auto& g : r->gaps) {
      pieces.emplace_back(g.from,
                          "<gap " + std::to_string(g.from) + "-" + std::to_string(g.to) + ">");
    }
    std::sort(pieces.begin(), pieces.end());
    for (const auto& p : pieces) out += p.second;
    pos = r->next;
  }
  return out;
}

std::unique_ptr<OutputLog> NewLog(const TempDir& dir) {
  auto log = OutputLog::Create(dir.Sub("out"), {});
  EXPECT_TRUE(log) << log.error().ToString();
  return std::move(*log);
}

std::unique_ptr<OutputLog> Reopen(const TempDir& dir) {
  auto log = OutputLog::Open(dir.Sub("out"), {});
  EXPECT_TRUE(log) << log.error().ToString();
  return std::move(*log);
}

void Append(OutputLog& log, const std::string& s) {
  ASSERT_TRUE(
      log.Append(OutputStream::kStdout, reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

// Take as Session::DrainFd does it; the caller decides how far the chunk gets.
std::string Take(OutputStage& stage, Pipe& pipe, uint64_t at, size_t max = 65536) {
  std::vector<uint8_t> buf(max);
  auto n = stage.Take(pipe.r.get(), OutputStream::kStderr, at, buf.data(), max);
  EXPECT_TRUE(n) << n.error().ToString();
  return n ? std::string(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(*n)) : "";
}

TEST(OutputStageTest, TakeMovesThePipesBytesIntoTheStageAndClearEmptiesIt) {
  auto stage = OutputStage::Create("s-test");
  ASSERT_TRUE(stage) << stage.error().ToString();
  Pipe pipe;
  uint8_t buf[16];
  auto empty = stage->Take(pipe.r.get(), OutputStream::kStdout, 0, buf, sizeof buf);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().errnum, EAGAIN);
  pipe.Write("hello, stage");
  EXPECT_EQ(Take(*stage, pipe, 42, 5), "hello");
  auto pending = stage->Pending();
  ASSERT_TRUE(pending && pending->has_value());
  EXPECT_EQ((*pending)->offset, 42u);
  EXPECT_EQ((*pending)->stream, OutputStream::kStderr);
  EXPECT_EQ(std::string((*pending)->bytes.begin(), (*pending)->bytes.end()), "hello");
  // Consumed from the pipe: the next read starts after them.
  ASSERT_TRUE(stage->Clear());
  EXPECT_FALSE(*stage->Pending());
  EXPECT_EQ(Take(*stage, pipe, 47), ", stage");
  ASSERT_TRUE(stage->Clear());
  pipe.w.Reset();
  auto eof = stage->Take(pipe.r.get(), OutputStream::kStdout, 54, buf, sizeof buf);
  ASSERT_TRUE(eof);
  EXPECT_EQ(*eof, 0u);
  EXPECT_FALSE(*stage->Pending());
}

TEST(OutputStageTest, KilledBeforeTheAppendTheStagedBytesAreAppended) {
  TempDir dir;
  auto log = NewLog(dir);
  Append(*log, "abc");
  auto stage = OutputStage::Create("s-test");
  ASSERT_TRUE(stage);
  Pipe pipe;
  pipe.Write("defg");
  EXPECT_EQ(Take(*stage, pipe, log->total()), "defg");
  log.reset();  // killed here
  log = Reopen(dir);
  ASSERT_EQ(log->total(), 3u);
  auto r = RecoverStaged(*stage, *log);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->outcome, Outcome::kAppended) << r->note;
  EXPECT_EQ(r->written, 4u);
  EXPECT_EQ(ReadAll(*log), "abcdefg");
  EXPECT_FALSE(*stage->Pending());
  // And once only: a second recovery finds the stage empty.
  auto again = RecoverStaged(*stage, *log);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->outcome, Outcome::kEmpty);
  EXPECT_EQ(ReadAll(*Reopen(dir)), "abcdefg");
}

TEST(OutputStageTest, KilledAfterTheAppendNothingIsRepeated) {
  TempDir dir;
  auto log = NewLog(dir);
  Append(*log, "abc");
  auto stage = OutputStage::Create("s-test");
  ASSERT_TRUE(stage);
  Pipe pipe;
  pipe.Write("defg\n");
  const std::string chunk = Take(*stage, pipe, log->total());
  Append(*log, chunk);
  log.reset();  // killed before Clear
  log = Reopen(dir);
  ASSERT_EQ(log->total(), 8u);
  auto r = RecoverStaged(*stage, *log);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->outcome, Outcome::kWritten) << r->note;
  EXPECT_EQ(r->written, 0u);
  EXPECT_EQ(ReadAll(*log), "abcdefg\n");
  EXPECT_FALSE(*stage->Pending());
}

TEST(OutputStageTest, KilledInTheMiddleOfTheTranscriptWriteTheTornRecordIsCompleted) {
  TempDir dir;
  auto log = NewLog(dir);
  Append(*log, "abc");
  auto stage = OutputStage::Create("s-test");
  ASSERT_TRUE(stage);
  Pipe pipe;
  const std::string chunk = Pattern(1000, 3);
  pipe.Write(chunk);
  ASSERT_EQ(Take(*stage, pipe, 3), chunk);
  log.reset();
  // What writev leaves when a fatal signal cuts it short: the header and 400 of 1000 bytes.
  {
    uint8_t header[13] = {};
    header[0] = 3;     // offset 3
    header[8] = 1;     // stderr
    header[9] = 0xe8;  // length 1000 = 0x03e8
    header[10] = 0x03;
    const int fd = ::open(dir.Sub("out/seg-0000000000000000.log").c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, header, sizeof header), 13);
    ASSERT_EQ(::write(fd, chunk.data(), 400), 400);
    ::close(fd);
  }
  log = Reopen(dir);
  ASSERT_EQ(log->total(), 1003u) << "Open reserves the torn record's range";
  ASSERT_EQ(log->held_end(), 3u);
  auto r = RecoverStaged(*stage, *log);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->outcome, Outcome::kAppended) << r->note;
  EXPECT_EQ(r->written, 1000u);
  EXPECT_EQ(ReadAll(*log), "abc" + chunk);
  log.reset();
  EXPECT_EQ(ReadAll(*Reopen(dir)), "abc" + chunk);
}

TEST(OutputStageTest, ARecordAlreadyWholeBeforeATornOneIsKept) {
  // A chunk larger than the log's largest record is written as several: the first whole, the
  // second torn. Only the missing part is written again.
  TempDir dir;
  OutputLogOptions small;
  small.transcript_max_bytes = 8 << 10;
  small.segments = 2;  // records of at most 4 KiB - 13
  auto created = OutputLog::Create(dir.Sub("out"), small);
  ASSERT_TRUE(created);
  auto log = std::move(*created);
  auto stage = OutputStage::Create("s-test");
  ASSERT_TRUE(stage);
  Pipe pipe;
  const std::string chunk = Pattern(5000);
  pipe.Write(chunk);
  ASSERT_EQ(Take(*stage, pipe, 0), chunk);
  Append(*log, chunk.substr(0, 4000));  // as if the second record never got written
  log.reset();
  auto reopened = OutputLog::Open(dir.Sub("out"), small);
  ASSERT_TRUE(reopened);
  log = std::move(*reopened);
  ASSERT_EQ(log->total(), 4000u);
  auto r = RecoverStaged(*stage, *log);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->outcome, Outcome::kAppended) << r->note;
  EXPECT_EQ(r->written, 1000u);
  EXPECT_EQ(ReadAll(*log), chunk);
}

TEST(OutputStageTest, ALogThatLostItsTailGetsTheBytesAtTheirOffsetAfterAGap) {
  TempDir dir;
  auto log = NewLog(dir);
  Append(*log, "abc");
  auto stage = OutputStage::Create("s-test");
  ASSERT_TRUE(stage);
  Pipe pipe;
  pipe.Write("xyz");
  ASSERT_EQ(Take(*stage, pipe, 10), "xyz");
  log.reset();
  log = Reopen(dir);
  auto r = RecoverStaged(*stage, *log);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->outcome, Outcome::kAppended);
  EXPECT_NE(r->note.find("[3, 10) was lost"), std::string::npos) << r->note;
  EXPECT_EQ(log->total(), 13u);
  EXPECT_EQ(ReadAll(*log), "abc<gap 3-10>xyz");
}

TEST(OutputStageTest, WhatTheLogContradictsIsDroppedAndSaid) {
  TempDir dir;
  auto log = NewLog(dir);
  Append(*log, "abcdefghij");
  auto stage = OutputStage::Create("s-test");
  ASSERT_TRUE(stage);
  Pipe pipe;
  // The log holds bytes past the staged range.
  pipe.Write("bc");
  ASSERT_EQ(Take(*stage, pipe, 1), "bc");
  auto past = RecoverStaged(*stage, *log);
  ASSERT_TRUE(past) << past.error().ToString();
  EXPECT_EQ(past->outcome, Outcome::kUnplaced);
  EXPECT_NE(past->note.find("up to 10 of 10"), std::string::npos) << past->note;
  EXPECT_EQ(ReadAll(*log), "abcdefghij");
  EXPECT_FALSE(*stage->Pending());
  // The log holds the staged range with other bytes.
  pipe.Write("XYZ");
  ASSERT_EQ(Take(*stage, pipe, 7), "XYZ");
  auto differs = RecoverStaged(*stage, *log);
  ASSERT_TRUE(differs);
  EXPECT_EQ(differs->outcome, Outcome::kUnplaced);
  EXPECT_NE(differs->note.find("differs"), std::string::npos) << differs->note;
  EXPECT_EQ(ReadAll(*log), "abcdefghij");
}

TEST(OutputStageTest, AStageOfAnotherFormatIsAnError) {
  auto stage = OutputStage::Create("s-test");
  ASSERT_TRUE(stage);
  const std::string junk(40, 'j');
  ASSERT_EQ(::pwrite(stage->fd(), junk.data(), junk.size(), 0), 40);
  TempDir dir;
  auto log = NewLog(dir);
  auto r = RecoverStaged(*stage, *log);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("8 bytes staged"), std::string::npos) << r.error().ToString();
  EXPECT_EQ(log->total(), 0u);
}

// --- A terminal's queue --------------------------------------------------------------------

// A PTY pair: the master nonblocking, the slave in raw output mode (no \r added).
struct Terminal {
  Terminal() {
    master.Reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
    if (!master) {
      ADD_FAILURE() << "posix_openpt: " << std::strerror(errno) << " (this test needs /dev/ptmx)";
      return;
    }
    EXPECT_EQ(::grantpt(master.get()), 0);
    EXPECT_EQ(::unlockpt(master.get()), 0);
    slave.Reset(::open(::ptsname(master.get()), O_RDWR | O_NOCTTY | O_CLOEXEC));
    EXPECT_TRUE(slave.valid()) << std::strerror(errno);
    struct termios t {};
    EXPECT_EQ(::tcgetattr(slave.get(), &t), 0);
    t.c_oflag &= ~static_cast<tcflag_t>(OPOST);
    EXPECT_EQ(::tcsetattr(slave.get(), TCSANOW, &t), 0);
  }
  void Write(const std::string& s) {
    ASSERT_EQ(::write(slave.get(), s.data(), s.size()), static_cast<ssize_t>(s.size()));
  }
  UniqueFd master, slave;
};

int Queued(int queue) {
  int n = -1;
  EXPECT_EQ(::ioctl(queue, FIONREAD, &n), 0);
  return n;
}

// The terminal's output waits in the line discipline until the master reads it; a short wait
// for it to be there.
size_t FillWhenReady(int master, int queue, size_t max) {
  for (int i = 0; i < 200; ++i) {
    auto n = FillPtyQueue(master, queue, max);
    if (n) return *n;
    EXPECT_EQ(n.error().errnum, EAGAIN) << n.error().ToString();
    ::usleep(5000);
  }
  ADD_FAILURE() << "the terminal's output never arrived";
  return 0;
}

TEST(PtyQueueTest, OneDescriptorReadsAndWritesThePipeAndNeverSeesEndOfFile) {
  auto queue = CreatePtyQueue();
  ASSERT_TRUE(queue) << queue.error().ToString();
  struct stat st {};
  ASSERT_EQ(::fstat(queue->get(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(::write(queue->get(), "abc", 3), 3);
  char buf[8];
  EXPECT_EQ(::read(queue->get(), buf, sizeof buf), 3);
  // Empty, with itself as a writer: EAGAIN, not end of file.
  EXPECT_EQ(::read(queue->get(), buf, sizeof buf), -1);
  EXPECT_EQ(errno, EAGAIN);
  // A stored copy comes back as a pipe; a memfd does not.
  auto adopted = AdoptPtyQueue(UniqueFd(::dup(queue->get())));
  EXPECT_TRUE(adopted) << adopted.error().ToString();
  auto stage = OutputStage::Create("s-test");
  ASSERT_TRUE(stage);
  auto wrong = AdoptPtyQueue(UniqueFd(::dup(stage->fd())));
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().ToString().find("not a pipe"), std::string::npos);
}

// The terminal's bytes go into the queue, leave the terminal, and then go through the stage
// as a pipe's; a kill after the fill leaves them in the queue, where the next supervisor
// takes them before the terminal's next bytes.
TEST(PtyQueueTest, ATerminalsChunkGoesThroughTheQueueAndSurvivesAKillThere) {
  Terminal term;
  ASSERT_TRUE(term.master.valid() && term.slave.valid());
  auto queue = CreatePtyQueue();
  ASSERT_TRUE(queue) << queue.error().ToString();
  auto stage = OutputStage::Create("s-test");
  ASSERT_TRUE(stage);
  // Nothing written yet: EAGAIN, the queue untouched.
  auto none = FillPtyQueue(term.master.get(), queue->get(), 65536);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().errnum, EAGAIN);
  term.Write("first\n");
  EXPECT_EQ(FillWhenReady(term.master.get(), queue->get(), 65536), 6u);
  EXPECT_EQ(Queued(queue->get()), 6);
  // "Killed" here: the bytes are in the queue and no longer in the terminal. The terminal's
  // next bytes wait: a queue that holds bytes is not filled.
  term.Write("second\n");
  ::usleep(50 * 1000);
  auto again = FillPtyQueue(term.master.get(), queue->get(), 65536);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, 6u);
  EXPECT_EQ(Queued(queue->get()), 6);
  // The next supervisor: the queue through the stage into the log, then the terminal.
  TempDir dir;
  auto log = NewLog(dir);
  uint8_t buf[64];
  auto n = stage->Take(queue->get(), OutputStream::kPty, log->total(), buf, sizeof buf);
  ASSERT_TRUE(n) << n.error().ToString();
  ASSERT_EQ(*n, 6u);
  ASSERT_TRUE(log->Append(OutputStream::kPty, buf, *n));
  ASSERT_TRUE(stage->Clear());
  EXPECT_EQ(FillWhenReady(term.master.get(), queue->get(), 65536), 7u);
  n = stage->Take(queue->get(), OutputStream::kPty, log->total(), buf, sizeof buf);
  ASSERT_TRUE(n) << n.error().ToString();
  ASSERT_TRUE(log->Append(OutputStream::kPty, buf, *n));
  EXPECT_EQ(ReadAll(*log), "first\nsecond\n");
  // The slave closed and everything read: the terminal's end (EIO) comes through as is.
  ASSERT_TRUE(stage->Clear());
  term.slave.Reset();
  auto end = FillPtyQueue(term.master.get(), queue->get(), 65536);
  ASSERT_FALSE(end);
  EXPECT_EQ(end.error().errnum, EIO) << end.error().ToString();
}

// A fill never takes more than the queue has room for: a terminal holding more than `max`
// leaves the rest where it is, and nothing is lost between the two.
TEST(PtyQueueTest, AFillTakesAtMostMaxAndTheRestStaysInTheTerminal) {
  Terminal term;
  ASSERT_TRUE(term.master.valid() && term.slave.valid());
  auto queue = CreatePtyQueue();
  ASSERT_TRUE(queue) << queue.error().ToString();
  const std::string text = Pattern(3000);
  term.Write(text);
  ::usleep(50 * 1000);
  std::string got;
  while (got.size() < text.size()) {
    const size_t n = FillWhenReady(term.master.get(), queue->get(), 1000);
    ASSERT_GT(n, 0u);
    ASSERT_LE(n, 1000u);
    std::string chunk(n, '\0');
    ASSERT_EQ(::read(queue->get(), chunk.data(), n), static_cast<ssize_t>(n));
    got += chunk;
  }
  EXPECT_EQ(got, text);
}

}  // namespace
}  // namespace mp::supervisor

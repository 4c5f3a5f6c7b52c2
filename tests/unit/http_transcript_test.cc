// The transcript text (src/http/transcript.h): the original's header and "[stderr] " marks,
// transcript offsets that count them, reads from any offset that agree with one read of the
// whole, gaps, the clamp past the end, and the bounded index of known points.
#include "http/transcript.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/messages.h"

namespace mp::http {
namespace {

using wire::OutputStream;

struct Piece {
  OutputStream stream;
  std::string bytes;
};

// A session's output as the supervisor holds it; reads answer like read_output (chunks split
// at `limit`, gaps for dropped ranges).
class FakeOutput {
 public:
  void Append(OutputStream stream, const std::string& bytes) {
    pieces_.push_back({stream, bytes});
    total_ += bytes.size();
  }
  void DropBefore(uint64_t offset) { dropped_ = offset; }
  [[nodiscard]] uint64_t total() const { return total_; }

  [[nodiscard]] wire::OutputRead Read(uint64_t since, uint32_t limit) const {
    wire::OutputRead read;
    read.total = total_;
    uint64_t at = 0;
    uint64_t pos = std::max(since, dropped_);
    if (pos > since) read.gaps.push_back({since, pos});
    for (const Piece& p : pieces_) {
      const uint64_t end = at + p.bytes.size();
      if (end > pos && read.data.size() < limit) {
        const auto skip = static_cast<size_t>(pos - at);
        const size_t n = std::min<size_t>(p.bytes.size() - skip, limit - read.data.size());
        read.chunks.push_back({p.stream, pos, static_cast<uint32_t>(n)});
        read.data.insert(read.data.end(), p.bytes.begin() + static_cast<long>(skip),
                         p.bytes.begin() + static_cast<long>(skip + n));
        pos += n;
      }
      at = end;
    }
    read.next = pos;
    return read;
  }

 private:
  std::vector<Piece> pieces_;
  uint64_t total_ = 0;
  uint64_t dropped_ = 0;
};

struct Response {
  std::string body;
  uint64_t offset = 0;
  uint64_t total = 0;
  uint64_t next = 0;
  int reads = 0;
};

// Drives a TranscriptBuilder as the route does, with the index.
Response Fetch(const FakeOutput& out, const std::string& header, uint64_t since, uint64_t cap,
               TranscriptIndex* index, uint32_t read_size = 7) {
  const TranscriptPoint start{0, header.size(), {}};
  const TranscriptPoint from = index != nullptr ? index->Before("s-1", since, start) : start;
  TranscriptBuilder b(header, from, since, cap);
  Response r;
  for (;;) {
    ++r.reads;
    const bool more = b.Add(out.Read(b.next_output(), read_size));
    if (index != nullptr) index->Record("s-1", b.point());
    if (!more) break;
    if (b.body_done() && index != nullptr) b.SkipTo(index->Furthest("s-1", start));
  }
  r.body = b.body();
  r.offset = b.offset();
  r.total = b.total();
  r.next = b.next();
  return r;
}

wire::SessionInfo Info(wire::SessionType type) {
  wire::SessionInfo info;
  info.id = "s-42";
  info.type = type;
  info.task_preview = "echo hello; echo oops >&2";
  return info;
}

TEST(TranscriptHeaderTest, TheOriginalsHeaderForExecAndPrintOnly) {
  EXPECT_EQ(TranscriptHeader(Info(wire::SessionType::kExec)),
            "# Session s-42\n## Task\n\necho hello; echo oops >&2\n\n---\n");
  EXPECT_EQ(TranscriptHeader(Info(wire::SessionType::kPrint)),
            "# Session s-42\n## Task\n\necho hello; echo oops >&2\n\n---\n");
  // The original piped the tmux pane into the file and wrote no header.
  EXPECT_EQ(TranscriptHeader(Info(wire::SessionType::kInteractive)), "");
}

TEST(StderrMarkerTest, MarksStderrLinesAndStreamChanges) {
  StderrMarker m;
  std::string out;
  EXPECT_EQ(m.Feed(OutputStream::kStdout, "hello\n", &out), 6u);
  EXPECT_EQ(m.Feed(OutputStream::kStderr, "oops\nagain\n", &out), 11u + 2 * kStderrMark.size());
  m.Feed(OutputStream::kStdout, "half", &out);
  m.Feed(OutputStream::kStderr, "err", &out);        // stderr after stdout mid-line: marked
  m.Feed(OutputStream::kStderr, "-more\n\n", &out);  // same stream continues: no new mark
  m.Feed(OutputStream::kPty, "tty\n", &out);
  EXPECT_EQ(out, "hello\n[stderr] oops\n[stderr] again\nhalf[stderr] err-more\n[stderr] \ntty\n");
  EXPECT_EQ(m.state(), (StderrMarker::State{true, false}));
  m.Feed(OutputStream::kStderr, "x", &out);
  EXPECT_EQ(m.state(), (StderrMarker::State{false, true}));
  m.Gap();
  out.clear();
  m.Feed(OutputStream::kStderr, "y", &out);  // after lost output: marked again
  EXPECT_EQ(out, "[stderr] y");
  EXPECT_EQ(m.Feed(OutputStream::kStderr, "", &out), 0u);
}

TEST(MarkedTextTest, StartsAtALineOrMidLine) {
  wire::OutputRead read;
  const std::string data = "tail\nnext\nout";
  read.chunks = {{OutputStream::kStderr, 100, 10}, {OutputStream::kStdout, 110, 3}};
  read.data.assign(data.begin(), data.end());
  EXPECT_EQ(MarkedText(read, true), "[stderr] tail\n[stderr] next\nout");
  EXPECT_EQ(MarkedText(read, false), "tail\n[stderr] next\nout");
  EXPECT_EQ(MarkedText(wire::OutputRead{}, true), "");
}

class TranscriptBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    out_.Append(OutputStream::kStdout, "hello\n");
    out_.Append(OutputStream::kStderr, "oops\nagain\n");
    out_.Append(OutputStream::kStdout, "tail 0123456789abcdefghij\n");
    out_.Append(OutputStream::kStderr, "last");
    header_ = TranscriptHeader(Info(wire::SessionType::kExec));
    whole_ = header_ + "hello\n[stderr] oops\n[stderr] again\ntail 0123456789abcdefghij\n" +
             "[stderr] last";
  }
  FakeOutput out_;
  std::string header_;
  std::string whole_;
};

TEST_F(TranscriptBuilderTest, WholeTranscriptAndItsSize) {
  const Response r = Fetch(out_, header_, 0, 1 << 20, nullptr);
  EXPECT_EQ(r.body, whole_);
  EXPECT_EQ(r.offset, 0u);
  EXPECT_EQ(r.total, whole_.size());
  EXPECT_EQ(r.next, whole_.size());
}

// Every `since`, with and without the index, with every cap: the body is the whole
// transcript's bytes from `since`, and the headers agree with them.
TEST_F(TranscriptBuilderTest, AnySinceAndCapAgreesWithTheWhole) {
  for (uint64_t cap : {1u, 5u, 9u, 1000u}) {
    TranscriptIndex index(4, 4, 8);
    for (uint64_t since = 0; since <= whole_.size(); ++since) {
      for (TranscriptIndex* ix : {static_cast<TranscriptIndex*>(nullptr), &index}) {
        const Response r = Fetch(out_, header_, since, cap, ix);
        const std::string want = whole_.substr(since, cap);
        ASSERT_EQ(r.body, want) << "since " << since << " cap " << cap;
        EXPECT_EQ(r.offset, since);
        EXPECT_EQ(r.total, whole_.size());
        EXPECT_EQ(r.next, since + want.size());
      }
    }
  }
}

TEST_F(TranscriptBuilderTest, SinceAtOrPastTheEndIsClampedToTheEnd) {
  for (uint64_t since : {whole_.size(), whole_.size() + 1, uint64_t{1} << 40, UINT64_MAX}) {
    const Response r = Fetch(out_, header_, since, 1000, nullptr);
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(r.offset, whole_.size()) << since;
    EXPECT_EQ(r.total, whole_.size());
    EXPECT_EQ(r.next, whole_.size());
  }
}

TEST_F(TranscriptBuilderTest, PollingFromNextReadsOnlyTheNewOutput) {
  TranscriptIndex index;
  Response r = Fetch(out_, header_, 0, 1 << 20, &index);
  ASSERT_EQ(r.body, whole_);
  out_.Append(OutputStream::kStderr, " more\n");
  out_.Append(OutputStream::kStdout, "done\n");
  const Response poll = Fetch(out_, header_, r.next, 1 << 20, &index, 1 << 16);
  EXPECT_EQ(poll.body, " more\ndone\n");  // stderr continues its line: no mark
  EXPECT_EQ(poll.offset, r.next);
  EXPECT_EQ(poll.total, r.next + poll.body.size());
  EXPECT_EQ(poll.reads, 1);  // from the point the last poll ended at
  EXPECT_EQ(index.sessions(), 1u);
}

TEST_F(TranscriptBuilderTest, InteractiveHasNoHeaderSoOffsetsAreOutputOffsets) {
  FakeOutput tty;
  tty.Append(OutputStream::kPty, "$ ls\r\nfile\r\n");
  const Response r = Fetch(tty, "", 6, 100, nullptr);
  EXPECT_EQ(r.body, "file\r\n");
  EXPECT_EQ(r.offset, 6u);
  EXPECT_EQ(r.total, tty.total());
}

TEST_F(TranscriptBuilderTest, DroppedOutputEndsTheBodyOrIsSkipped) {
  out_.DropBefore(10);  // "hello\n" and the first 4 bytes of stderr are gone
  // From inside the header: the body stops where the dropped range starts.
  const Response head = Fetch(out_, header_, 0, 1000, nullptr);
  EXPECT_EQ(head.body, header_);
  EXPECT_EQ(head.next, header_.size());
  // The dropped range counts as its raw size; the body starts after it.
  const Response after = Fetch(out_, header_, header_.size(), 1000, nullptr);
  EXPECT_EQ(after.offset, header_.size() + 10);
  EXPECT_EQ(after.body, "[stderr] \n[stderr] again\ntail 0123456789abcdefghij\n[stderr] last");
  EXPECT_EQ(after.total, after.offset + after.body.size());
  EXPECT_EQ(after.next, after.total);
}

TEST(TranscriptIndexTest, BoundedAndMostRecentlyUsed) {
  TranscriptIndex index(2, 4, 10);
  const TranscriptPoint start{0, 5, {}};
  for (uint64_t o = 0; o <= 200; o += 10) index.Record("a", {o, o * 2 + 5, {}});
  EXPECT_LE(index.points("a"), 4u);
  // The furthest point stays exact; earlier ones thin out but stay at or before the ask.
  EXPECT_EQ(index.Furthest("a", start).output, 200u);
  const TranscriptPoint p = index.Before("a", 300, start);
  EXPECT_LE(p.transcript, 300u);
  EXPECT_EQ(p.transcript, p.output * 2 + 5);
  EXPECT_EQ(index.Before("a", 4, start).output, 0u);  // before every point: the start
  index.Record("b", {10, 15, {}});
  (void)index.Furthest("a", start);  // "a" used more recently than "b"
  index.Record("c", {10, 15, {}});   // drops "b"
  EXPECT_EQ(index.sessions(), 2u);
  EXPECT_EQ(index.Furthest("b", start).output, 0u);
  EXPECT_EQ(index.Furthest("a", start).output, 200u);
  EXPECT_EQ(index.Furthest("c", start).output, 10u);
}

}  // namespace
}  // namespace mp::http

// The transcript text of GET /sessions/{id}/transcript, as the original MonkeyProof server
// wrote its transcript file: for exec and print sessions a header
// ("# Session <id>\n## Task\n\n<task>\n\n---\n"), then the output with "[stderr] " marking
// stderr; an interactive session's transcript is its terminal output alone. Transcript
// offsets (?since=, x-transcript-*) count the bytes of that text, header and marks included,
// so they differ from output offsets (/output, WebSocket). Mapping one to the other needs the
// marks before it, so the API keeps a bounded index of points it has passed (TranscriptIndex).
// Runs in monkeyproof-api on the io_context thread; pure data, no syscalls, not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/messages.h"

namespace mp::http {

inline constexpr std::string_view kStderrMark = "[stderr] ";

// Inserts "[stderr] " before a stderr byte that starts a line, follows output of another
// stream, or follows a gap (output no longer held). Stdout and PTY output pass unchanged.
class StderrMarker {
 public:
  struct State {
    bool at_line_start = true;  // the last byte fed was '\n', or nothing was fed yet
    bool after_stderr = false;  // the last byte fed was stderr
    friend bool operator==(const State&, const State&) = default;
  };

  StderrMarker() = default;
  explicit StderrMarker(State state) : state_(state) {}

  // Appends `data` (one stream's bytes, in order) with its marks to *out; returns the bytes
  // appended.
  size_t Feed(wire::OutputStream stream, std::string_view data, std::string* out);
  // Output was lost before the next byte.
  void Gap() { state_ = State{true, false}; }
  [[nodiscard]] State state() const { return state_; }

 private:
  State state_;
};

// The bytes of a read_output answer with their stderr marks. When `starts_at_line` is false
// the read starts mid-line after unknown output: its first bytes get no mark.
std::string MarkedText(const wire::OutputRead& read, bool starts_at_line);

// The original's header of an exec or print session's transcript; empty for interactive ones.
// `task` is the task as the supervisor keeps it (its first wire::kMaxTaskPreviewBytes).
std::string TranscriptHeader(const wire::SessionInfo& info);

// A place in a session's output and its transcript, with the marker's state there.
struct TranscriptPoint {
  uint64_t output = 0;      // output offset
  uint64_t transcript = 0;  // transcript offset of the same place
  StderrMarker::State state;
};

// Builds one transcript response from read_output answers: the body is the transcript from
// `since`, at most `cap` bytes, contiguous (it stops before output no longer held; when such
// a range comes first it is skipped and the body starts after it); the scan goes on to the
// end of the output for the transcript's size. A `since` past the end is clamped to the end.
class TranscriptBuilder {
 public:
  // `header`: TranscriptHeader(); `from`: where to start reading (a point at or before
  // `since`, e.g. from TranscriptIndex::Before, or the start: {0, header.size(), {}}).
  TranscriptBuilder(const std::string& header, const TranscriptPoint& from, uint64_t since,
                    uint64_t cap);

  // The output offset of the next read.
  [[nodiscard]] uint64_t next_output() const { return point_.output; }
  // Takes the answer of a read from next_output(); returns whether another read is needed.
  bool Add(const wire::OutputRead& read);
  // The body is complete: only the size is still being counted.
  [[nodiscard]] bool body_done() const { return done_; }
  // Once the body is complete, continues counting from a known later point instead.
  void SkipTo(const TranscriptPoint& point);
  [[nodiscard]] const TranscriptPoint& point() const { return point_; }

  // The results, once Add has returned false.
  [[nodiscard]] std::string& body() { return body_; }
  [[nodiscard]] uint64_t offset() const;  // x-transcript-offset: where the body starts
  [[nodiscard]] uint64_t total() const { return point_.transcript; }  // transcript size
  [[nodiscard]] uint64_t next() const { return offset() + body_.size(); }

 private:
  void Take(uint64_t at, std::string_view text);
  void Gap(uint64_t to);

  uint64_t since_;
  uint64_t cap_;
  TranscriptPoint point_;
  StderrMarker marker_;
  std::string body_;
  std::optional<uint64_t> body_offset_;
  bool done_ = false;
  std::string scratch_;
};

// Points already computed, per session, so that a poll from the last next-offset reads only
// the new output instead of everything from the start. Bounded: at most `max_sessions`
// sessions (least recently used dropped) and `max_points` points each (spaced at least
// `spacing` output bytes apart; when full, every other one is dropped and the spacing
// doubles). Output is append-only, so a point stays true for as long as the session exists.
class TranscriptIndex {
 public:
  explicit TranscriptIndex(size_t max_sessions = 256, size_t max_points = 64,
                           uint64_t spacing = uint64_t{1} << 20)
      : max_sessions_(max_sessions), max_points_(max_points), spacing_(spacing) {}

  // The known point of `session` with the largest transcript offset <= `transcript`, or
  // `start` when none is later than it.
  TranscriptPoint Before(const std::string& session, uint64_t transcript,
                         const TranscriptPoint& start);
  // The known point of `session` furthest into the output, or `start`.
  TranscriptPoint Furthest(const std::string& session, const TranscriptPoint& start);
  // Remembers `point`: as the furthest one when it is (the next poll starts there), and as a
  // lasting one when it is at least the spacing past the last lasting one.
  void Record(const std::string& session, const TranscriptPoint& point);

  [[nodiscard]] size_t sessions() const { return entries_.size(); }
  [[nodiscard]] size_t points(const std::string& session) const;

 private:
  struct Entry {
    std::vector<TranscriptPoint> points;  // lasting points, in output order
    TranscriptPoint furthest;             // the furthest point recorded
    uint64_t spacing = 0;
    std::list<std::string>::iterator lru;
  };
  Entry* Find(const std::string& session);

  size_t max_sessions_;
  size_t max_points_;
  uint64_t spacing_;
  std::list<std::string> lru_;  // most recently used first
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace mp::http

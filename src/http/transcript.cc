#include "http/transcript.h"

#include <algorithm>

namespace mp::http {

size_t StderrMarker::Feed(wire::OutputStream stream, std::string_view data, std::string* out) {
  if (data.empty()) return 0;
  const size_t before = out->size();
  if (stream != wire::OutputStream::kStderr) {
    out->append(data);
    state_ = State{data.back() == '\n', false};
    return out->size() - before;
  }
  size_t from = 0;  // first byte not yet appended
  bool mark = state_.at_line_start || !state_.after_stderr;
  for (size_t i = 0; i < data.size(); ++i) {
    if (mark) {
      out->append(data.substr(from, i - from));
      out->append(kStderrMark);
      from = i;
    }
    mark = data[i] == '\n';
  }
  out->append(data.substr(from));
  state_ = State{data.back() == '\n', true};
  return out->size() - before;
}

std::string MarkedText(const wire::OutputRead& read, bool starts_at_line) {
  const bool first_is_stderr =
      !read.chunks.empty() && read.chunks.front().stream == wire::OutputStream::kStderr;
  StderrMarker marker(starts_at_line ? StderrMarker::State{}
                                     : StderrMarker::State{false, first_is_stderr});
  std::string out;
  out.reserve(read.data.size() + 64);
  size_t pos = 0;
  for (const wire::OutputChunk& chunk : read.chunks) {
    // The decoder guarantees the lengths add up to the data; stay in bounds regardless.
    const size_t len = std::min<size_t>(chunk.length, read.data.size() - pos);
    marker.Feed(chunk.stream,
                std::string_view(reinterpret_cast<const char*>(read.data.data()) + pos, len), &out);
    pos += len;
  }
  return out;
}

std::string TranscriptHeader(const wire::SessionInfo& info) {
  if (info.type == wire::SessionType::kInteractive) return {};
  return "# Session " + info.id + "\n## Task\n\n" + info.task_preview + "\n\n---\n";
}

TranscriptBuilder::TranscriptBuilder(const std::string& header, const TranscriptPoint& from,
                                     uint64_t since, uint64_t cap)
    : since_(since), cap_(cap), point_(from), marker_(from.state) {
  if (from.output == 0 && since < header.size()) Take(0, header);
}

void TranscriptBuilder::Take(uint64_t at, std::string_view text) {
  if (done_) return;
  const uint64_t end = at + text.size();
  const uint64_t start = body_offset_ ? *body_offset_ + body_.size() : std::max(since_, at);
  if (end <= start || start < at) return;
  if (!body_offset_) body_offset_ = start;
  const uint64_t room = cap_ - body_.size();
  const uint64_t n = std::min<uint64_t>(end - start, room);
  body_.append(text.substr(static_cast<size_t>(start - at), static_cast<size_t>(n)));
  if (body_.size() >= cap_) done_ = true;
}

void TranscriptBuilder::Gap(uint64_t to) {
  if (to <= point_.output) return;
  // The body stays contiguous: it ends before the gap, or starts after it.
  if (body_offset_ && !body_.empty()) done_ = true;
  point_.transcript += to - point_.output;
  point_.output = to;
  marker_.Gap();
}

bool TranscriptBuilder::Add(const wire::OutputRead& read) {
  const uint64_t began = point_.output;
  size_t pos = 0;
  for (const wire::OutputChunk& chunk : read.chunks) {
    // The decoder guarantees the lengths add up to the data; stay in bounds regardless.
    const size_t len = std::min<size_t>(chunk.length, read.data.size() - pos);
    const std::string_view bytes(reinterpret_cast<const char*>(read.data.data()) + pos, len);
    pos += len;
    if (chunk.offset + len <= point_.output) continue;  // before where this read began
    Gap(chunk.offset);
    scratch_.clear();
    marker_.Feed(chunk.stream, bytes, &scratch_);
    Take(point_.transcript, scratch_);
    point_.transcript += scratch_.size();
    point_.output = chunk.offset + len;
  }
  Gap(read.next);
  point_.state = marker_.state();
  return read.next < read.total && point_.output > began;
}

void TranscriptBuilder::SkipTo(const TranscriptPoint& point) {
  if (!done_ || point.output <= point_.output) return;
  point_ = point;
  marker_ = StderrMarker(point.state);
}

uint64_t TranscriptBuilder::offset() const {
  return body_offset_.value_or(std::min(since_, point_.transcript));
}

TranscriptIndex::Entry* TranscriptIndex::Find(const std::string& session) {
  const auto it = entries_.find(session);
  if (it == entries_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return &it->second;
}

TranscriptPoint TranscriptIndex::Before(const std::string& session, uint64_t transcript,
                                        const TranscriptPoint& start) {
  const Entry* e = Find(session);
  if (e == nullptr) return start;
  TranscriptPoint best = start;
  for (const TranscriptPoint& p : e->points) {
    if (p.transcript > transcript) break;
    if (p.output > best.output) best = p;
  }
  if (e->furthest.transcript <= transcript && e->furthest.output > best.output) {
    best = e->furthest;
  }
  return best;
}

TranscriptPoint TranscriptIndex::Furthest(const std::string& session,
                                          const TranscriptPoint& start) {
  const Entry* e = Find(session);
  if (e == nullptr || e->furthest.output < start.output) return start;
  return e->furthest;
}

void TranscriptIndex::Record(const std::string& session, const TranscriptPoint& point) {
  Entry* e = Find(session);
  if (e == nullptr) {
    if (max_sessions_ == 0) return;
    if (entries_.size() >= max_sessions_) {
      entries_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(session);
    e = &entries_[session];
    e->lru = lru_.begin();
    e->spacing = spacing_;
    e->furthest = point;
  }
  if (point.output > e->furthest.output) e->furthest = point;
  const uint64_t last = e->points.empty() ? 0 : e->points.back().output;
  if (point.output < last + e->spacing) return;
  e->points.push_back(point);
  if (e->points.size() > max_points_) {
    // Keep every other point: the spacing doubles, the memory stays bounded.
    size_t kept = 0;
    for (size_t i = 0; i < e->points.size(); i += 2) e->points[kept++] = e->points[i];
    e->points.resize(kept);
    e->spacing *= 2;
  }
}

size_t TranscriptIndex::points(const std::string& session) const {
  const auto it = entries_.find(session);
  return it == entries_.end() ? 0 : it->second.points.size();
}

}  // namespace mp::http

// GET /sessions/{id}/transcript (the original's text, transcript.h) and GET
// /sessions/{id}/output (raw bytes): reads that span several read_output calls to the
// supervisor, answered as one response with their offset headers. Runs in monkeyproof-api on
// the io_context thread.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/beast/http/field.hpp>

#include "http/api_json.h"
#include "http/route_helpers.h"
#include "http/transcript.h"

namespace mp::http::routes {
namespace http = boost::beast::http;

namespace {

// GET /sessions/{id}/output: default and largest `limit`.
constexpr uint64_t kMaxOutputRead = 1024 * 1024;

// ---- Output reads spanning several read_output calls.

struct Collected {
  std::string bytes;
  std::optional<uint64_t> first;  // offset of bytes[0]
  std::vector<wire::OutputRange> gaps;
  std::vector<wire::OutputChunk> chunks;
  uint64_t next = 0;
  uint64_t total = 0;
  bool ended = false;
};

struct Reader : std::enable_shared_from_this<Reader> {
  Call call;
  uint64_t cap = 0;
  Collected got;
  std::function<void(Collected&)> done;

  void Next() {
    const uint64_t want = std::min<uint64_t>(wire::kMaxChunkBytes, cap - got.bytes.size());
    Ask(
        call,
        wire::ReadOutputRequest{call->match.session_id, got.next, static_cast<uint32_t>(want)},
        [self = shared_from_this()](const wire::Response& r) {
          const auto& read = std::get<wire::OutputRead>(r.body);
          self->Add(read);
          const bool full = self->got.bytes.size() >= self->cap;
          if (full || read.next >= read.total || read.chunks.empty()) {
            self->done(self->got);
          } else {
            self->Next();
          }
        },
        &ReadError);
  }

  // read_output's `since` came from the query: name it as the client wrote it.
  static ApiError ReadError(const wire::ErrorBody& error) {
    ApiError e = SessionError(error);
    if (e.field == "/since") e.field = "?since";
    return e;
  }

  void Add(const wire::OutputRead& read) {
    size_t pos = 0;
    for (const auto& chunk : read.chunks) {
      if (!got.first) got.first = chunk.offset;
      got.chunks.push_back(chunk);
      got.bytes.append(reinterpret_cast<const char*>(read.data.data()) + pos, chunk.length);
      pos += chunk.length;
    }
    got.gaps.insert(got.gaps.end(), read.gaps.begin(), read.gaps.end());
    got.next = read.next;
    got.total = read.total;
    got.ended = read.ended;
  }
};

void ReadRange(const Call& c, uint64_t since, uint64_t cap, std::function<void(Collected&)> done) {
  auto reader = std::make_shared<Reader>();
  reader->call = c;
  reader->cap = cap;
  reader->got.next = since;
  reader->done = std::move(done);
  reader->Next();
}

std::string GapsHeader(const std::vector<wire::OutputRange>& gaps) {
  std::string s;
  for (const auto& g : gaps) {
    if (!s.empty()) s += ',';
    s += std::to_string(g.from) + "-" + std::to_string(g.to);
  }
  return s;
}

// The transcript in the original's text (transcript.h): reads from the closest known point
// before ?since, then on to the end of the output for the size.
struct TranscriptReader : std::enable_shared_from_this<TranscriptReader> {
  Call call;
  TranscriptBuilder builder;

  TranscriptReader(Call c, const std::string& header, const TranscriptPoint& from, uint64_t since,
                   uint64_t cap)
      : call(std::move(c)), builder(header, from, since, cap) {}

  void Next() {
    Ask(call,
        wire::ReadOutputRequest{call->match.session_id, builder.next_output(),
                                static_cast<uint32_t>(wire::kMaxChunkBytes)},
        [self = shared_from_this()](const wire::Response& r) {
          TranscriptIndex& index = self->call->ctx.transcripts;
          const std::string& id = self->call->match.session_id;
          const bool more = self->builder.Add(std::get<wire::OutputRead>(r.body));
          index.Record(id, self->builder.point());
          if (!more) {
            self->Respond();
            return;
          }
          if (self->builder.body_done()) self->builder.SkipTo(index.Furthest(id, {}));
          self->Next();
        });
  }

  void Respond() {
    HttpResponse res{http::status::ok, call->request.version()};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.set("x-transcript-offset", std::to_string(builder.offset()));
    res.set("x-transcript-total-size", std::to_string(builder.total()));
    res.set("x-transcript-next-offset", std::to_string(builder.next()));
    res.keep_alive(call->request.keep_alive());
    res.body() = std::move(builder.body());
    res.prepare_payload();
    call->respond(std::move(res));
  }
};

void Transcript(const Call& c) {
  if (!CheckSessionId(c)) return;
  auto since = QueryNumber(c, "since", 0, 0, UINT64_MAX);
  if (!since) return;
  Ask(c, wire::GetRequest{c->match.session_id}, [c, since = *since](const wire::Response& r) {
    const std::string header = TranscriptHeader(std::get<wire::SessionInfo>(r.body));
    const TranscriptPoint start{0, header.size(), {}};
    const TranscriptPoint from = c->ctx.transcripts.Before(c->match.session_id, since, start);
    std::make_shared<TranscriptReader>(c, header, from, since, c->ctx.config.transcript_max_bytes)
        ->Next();
  });
}

void Output(const Call& c) {
  if (!CheckSessionId(c)) return;
  auto since = QueryNumber(c, "since", 0, 0, UINT64_MAX);
  if (!since) return;
  auto limit = QueryNumber(c, "limit", kMaxOutputRead, 1, kMaxOutputRead);
  if (!limit) return;
  ReadRange(c, *since, *limit, [c, since](Collected& got) {
    HttpResponse res{http::status::ok, c->request.version()};
    res.set(http::field::content_type, "application/octet-stream");
    res.set("x-output-offset", std::to_string(got.first.value_or(*since)));
    res.set("x-output-next-offset", std::to_string(got.next));
    res.set("x-output-total-size", std::to_string(got.total));
    res.set("x-output-ended", got.ended && got.next >= got.total ? "true" : "false");
    if (!got.gaps.empty()) res.set("x-output-gaps", GapsHeader(got.gaps));
    res.keep_alive(c->request.keep_alive());
    res.body() = std::move(got.bytes);
    res.prepare_payload();
    Respond(c, std::move(res));
  });
}

}  // namespace

void TranscriptRoute(const Call& c) { Transcript(c); }
void OutputRoute(const Call& c) { Output(c); }

}  // namespace mp::http::routes

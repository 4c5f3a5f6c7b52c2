// libFuzzer target for the control protocol's part records (common/wire.h, "Parts"): the
// input is a sequence of records, each a u16le length then that many bytes, fed in order to
// one FrameAssembler as monkeyproofd's control server feeds received records. A joined frame
// must lie inside the assembler's bytes and decode like any frame (DecodeRequest, as the
// supervisor does). Second, the input as the JSON of a frame stretched over one record must
// split and join back to the same bytes. A finding aborts. Built with -fsanitize=fuzzer under
// the `fuzz` preset; the normal build replays tests/fuzz/corpus/parts (fuzz_replay.parts).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "common/messages.h"
#include "common/wire.h"

namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "parts_fuzz: %s\n", what);
  std::abort();
}

void FeedRecords(std::span<const uint8_t> input) {
  mp::wire::FrameAssembler assembler;
  size_t i = 0;
  while (i + 2 <= input.size()) {
    const size_t n = input[i] | static_cast<size_t>(input[i + 1]) << 8;
    i += 2;
    const std::span<const uint8_t> record = input.subspan(i, std::min(n, input.size() - i));
    i += record.size();
    auto got = assembler.Add(record);
    if (!got) {
      if (got.error().what.empty()) Die("a refusal that does not say why");
      return;  // the connection would be closed here
    }
    if (!*got) {
      if (!assembler.pending()) Die("a part stored but nothing pending");
      continue;
    }
    const mp::wire::FrameView& view = **got;
    if (view.json.empty()) Die("a joined frame with an empty envelope");
    mp::wire::DecodeDetail detail;
    (void)mp::wire::DecodeRequest(view, &detail);
  }
}

void SplitAndJoin(std::span<const uint8_t> input) {
  if (input.empty()) return;
  // Stretch the input past one record by repeating it; the length varies with the input.
  const size_t total = mp::wire::kMaxFrameBytes + 1 + input[0] * 331u;
  std::string json;
  json.reserve(total);
  while (json.size() < total)
    json.append(reinterpret_cast<const char*>(input.data()), input.size());
  json.resize(total);
  auto frame = mp::wire::EncodeFrame(json, {}, mp::wire::kMaxMessageBytes);
  if (!frame) Die("EncodeFrame refused a frame under kMaxMessageBytes");
  const std::vector<uint8_t> original = *frame;
  auto records = mp::wire::SplitFrame(std::move(*frame));
  if (!records) Die("SplitFrame refused a well-formed frame");
  mp::wire::FrameAssembler assembler;
  for (size_t k = 0; k < records->size(); ++k) {
    const auto& r = (*records)[k];
    if (r.size() > mp::wire::kMaxFrameBytes) Die("a part over one record");
    auto got = assembler.Add(r);
    if (!got) Die("the assembler refused SplitFrame's parts");
    if (got->has_value() != (k + 1 == records->size())) Die("joined too early or never");
    if (!got->has_value()) continue;
    const auto& view = **got;
    if (view.json.size() != json.size() || view.json != json || !view.data.empty()) {
      Die("the joined frame differs from the split one");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  FeedRecords(input);
  SplitAndJoin(input);
  return 0;
}

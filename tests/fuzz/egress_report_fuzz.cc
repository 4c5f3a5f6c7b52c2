// libFuzzer target for the verdict report decoder (egress/verdict_report.h), which the root
// supervisor runs on every record monkeyproof-egress sends. Besides "no crash, no sanitizer
// report": an accepted record is exactly the header plus its strings, its views lie inside the
// input, and it re-encodes to the very same bytes.
// Built with -fsanitize=fuzzer under the `fuzz` preset; the normal build replays
// tests/fuzz/corpus/egress_report (fuzz_replay.egress_report).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "egress/verdict_report.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto report = mp::egress::DecodeVerdictReport(in);
  if (!report) return 0;
  const auto inside = [&](std::string_view s) {
    return s.empty() || (s.data() >= in.data() && s.data() + s.size() <= in.data() + in.size());
  };
  if (!inside(report->session) || !inside(report->name) || !inside(report->reason)) std::abort();
  if (in.size() != mp::egress::kVerdictReportHeaderBytes + report->session.size() +
                       report->name.size() + report->reason.size()) {
    std::abort();
  }
  if (in.size() > mp::egress::kMaxVerdictReportBytes) std::abort();
  if (mp::egress::EncodeVerdictReport(*report) != in) std::abort();
  return 0;
}

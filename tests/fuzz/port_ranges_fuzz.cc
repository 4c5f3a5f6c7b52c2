// libFuzzer target for the port sysctls' parsers (common/port_ranges.h): the input is both an
// ip_local_reserved_ports text and an ip_local_port_range text. Besides "no crash, no
// sanitizer report" it aborts when an invariant fails: every accepted reserved range has
// low <= high; the ranges printed back the kernel's way ("a" or "a-b", joined by commas) parse
// to the same ranges and are no longer than the text; an accepted ephemeral range has
// 0 < low <= high. The normal build replays tests/fuzz/corpus/port_ranges
// (fuzz_replay.port_ranges).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/port_ranges.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "port_ranges_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto reserved = mp::common::ParseReservedPorts(text)) {
    std::string printed;
    for (const mp::common::PortRange& r : *reserved) {
      Check(r.low <= r.high, "a reserved range ends below its start");
      if (!printed.empty()) printed += ',';
      printed += std::to_string(r.low);
      if (r.high != r.low) printed += "-" + std::to_string(r.high);
    }
    std::string_view body = text;
    if (!body.empty() && body.back() == '\n') body.remove_suffix(1);
    Check(printed.size() <= body.size(), "the ranges print longer than their text");
    auto again = mp::common::ParseReservedPorts(printed);
    Check(again && *again == *reserved, "the ranges printed back parse differently");
  }
  if (auto range = mp::common::ParseEphemeralPortRange(text)) {
    Check(range->low > 0 && range->low <= range->high, "an ephemeral range out of order");
  }
  return 0;
}

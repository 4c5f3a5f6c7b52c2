// libFuzzer target for what the `monkeyproof` CLI reads from the server (src/cli, mp_cli_core):
// WebSocket server messages and the resume cursor, the raw-output headers, JSON answers picked
// apart by member, and the formatters that turn answers into terminal text. The first byte's
// low nibble picks the parser ('0'..'5' in the corpus); the rest is its input. Besides "no
// crash, no sanitizer report", each branch checks an invariant and aborts when it fails: the
// cursor never moves back and only writes bytes of the message, parsed offsets are ordered,
// and text for the terminal is valid UTF-8 without control characters (a server cannot drive
// the operator's terminal). Built with -fsanitize=fuzzer under the `fuzz` preset; the normal
// build links it with replay_main.cc to replay tests/fuzz/corpus/cli (fuzz_replay.cli).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "cli/format.h"
#include "cli/protocol.h"

namespace {

namespace cli = mp::cli;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "cli_fuzz: %s\n", what);
  std::abort();
}

void Check(bool ok, const char* what) {
  if (!ok) Die(what);
}

// Valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF) whose code points
// are printable: no C0 controls but '\n' where `newlines`, no DEL, no C1 controls.
bool IsTerminalSafe(std::string_view s, bool newlines) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    uint32_t cp = 0;
    size_t len = 0;
    if (b < 0x80) {
      cp = b;
      len = 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
      cp = b & 0x1F;
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      cp = b & 0x0F;
      len = 3;
    } else if (b >= 0xF0 && b <= 0xF4) {
      cp = b & 0x07;
      len = 4;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    if (cp == '\n' ? !newlines : (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F))) {
      return false;
    }
    i += len;
  }
  return true;
}

// Input: messages separated by '\n', fed to one cursor as a reconnecting stream would.
void FuzzServerMessages(std::string_view input) {
  cli::OutputCursor cursor(input.size() % 7);
  for (;;) {
    const size_t nl = input.find('\n');
    const std::string_view text = input.substr(0, nl);
    const auto msg = cli::ParseServerMessage(text);
    if (msg) {
      Check(!msg->has_offsets || msg->offset <= msg->next, "offset after next");
      const uint64_t before = cursor.next();
      const std::string_view out = cursor.Accept(*msg);
      Check(cursor.next() >= before, "the cursor moved back");
      Check(out.empty() || (out.data() >= msg->data.data() &&
                            out.data() + out.size() <= msg->data.data() + msg->data.size()),
            "the cursor wrote bytes that are not the message's");
      if (msg->has_offsets && !out.empty()) {
        Check(cursor.next() == msg->next, "the cursor is not at the message's end");
      }
    } else {
      Check(!msg.error().what.empty(), "an error without a message");
    }
    if (nl == std::string_view::npos) break;
    input.remove_prefix(nl + 1);
  }
}

// Input: "status\nname: value\n...\n\nbody" as the transport would hand it over.
cli::HttpResponse ResponseFrom(std::string_view input) {
  cli::HttpResponse r;
  const size_t end = input.find("\n\n");
  std::string_view head = input.substr(0, end);
  r.body = end == std::string_view::npos ? "" : std::string(input.substr(end + 2));
  const size_t nl = head.find('\n');
  const std::string_view status = head.substr(0, nl);
  r.status = status.empty() ? 0 : static_cast<unsigned char>(status[0]) + 200;
  r.reason = std::string(status.substr(status.empty() ? 0 : 1));
  head = nl == std::string_view::npos ? std::string_view() : head.substr(nl + 1);
  while (!head.empty()) {
    const size_t eol = head.find('\n');
    const std::string_view line = head.substr(0, eol);
    const size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string_view value = line.substr(colon + 1);
      if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
    }
    head = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 1);
  }
  return r;
}

void FuzzOutputHeaders(std::string_view input) {
  const cli::HttpResponse r = ResponseFrom(input);
  const auto chunk = cli::ParseOutputHeaders(r);
  if (chunk) {
    for (const auto& [from, to] : chunk->gaps) Check(from <= to, "a gap ends before it starts");
  }
  const auto gaps = cli::ParseGaps(input);
  if (gaps) {
    for (const auto& [from, to] : *gaps) Check(from <= to, "a gap ends before it starts");
  }
  Check(IsTerminalSafe(cli::FormatHttpError(r, "fuzz"), false), "FormatHttpError is unsafe");
  Check(IsTerminalSafe(cli::FormatHttpError(r, ""), false), "FormatHttpError is unsafe");
}

void FuzzMembers(std::string_view input) {
  (void)cli::JsonStringMember(input, "id");
  (void)cli::JsonIntegerMember(input, "code");
  (void)cli::ParseIsoTimeMs(input);
  const std::string clean = cli::Sanitize(input, true);
  Check(IsTerminalSafe(clean, true), "Sanitize(keep_newlines) is unsafe");
  Check(IsTerminalSafe(cli::Sanitize(input, false), false), "Sanitize is unsafe");
  const size_t width = input.size() % 40;
  const std::string cut = cli::TruncateToWidth(clean, width);
  Check(cli::DisplayWidth(cut) <= width, "TruncateToWidth is too wide");
  Check(IsTerminalSafe(cut, true), "TruncateToWidth broke UTF-8");
}

// The three formatters take a whole answer; each line of the result is for the terminal.
void FuzzFormatters(std::string_view input, int which) {
  constexpr int64_t kNow = 1'764'000'000'000;  // 2025-11-24, a fixed "now"
  const size_t width = input.size() % 3 == 0 ? 0 : 20 + input.size() % 100;
  mp::Result<std::string> out = which == 0   ? cli::FormatSessionTable(input, kNow, width)
                                : which == 1 ? cli::FormatSessionDetail(input, kNow, 5)
                                             : cli::FormatPolicyTable(input, width);
  if (out) {
    Check(IsTerminalSafe(*out, true), "a formatter wrote unsafe text");
  } else {
    Check(!out.error().what.empty(), "an error without a message");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch ((data[0] & 0x0F) % 6) {
    case 0:
      FuzzServerMessages(input);
      break;
    case 1:
      FuzzOutputHeaders(input);
      break;
    case 2:
      FuzzMembers(input);
      break;
    default:
      FuzzFormatters(input, (data[0] & 0x0F) % 6 - 3);
      break;
  }
  return 0;
}

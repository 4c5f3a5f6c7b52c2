// libFuzzer target for the public API's input surface (src/http, mp_http_core): request bodies,
// WebSocket client messages, request targets, query values and the UTF-8 carry. The first
// byte's low nibble picks the parser ('0'..'8' in the corpus); the rest is its input. Besides
// "no crash, no sanitizer report", each branch checks an invariant and aborts when it fails:
// a spawn the API accepts is one the supervisor's decoder accepts, values are in range, output
// built for clients is valid JSON / valid UTF-8, and the carry's consumed count adds up.
// Built with -fsanitize=fuzzer under the `fuzz` preset; the normal build links it with
// replay_main.cc to replay tests/fuzz/corpus/api as a unit test (fuzz_replay.api).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/messages.h"
#include "common/wire.h"
#include "http/api_json.h"
#include "http/router.h"
#include "http/utf8.h"

namespace {

namespace http = mp::http;
namespace wire = mp::wire;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "api_fuzz: %s\n", what);
  std::abort();
}

void Check(bool ok, const char* what) {
  if (!ok) Die(what);
}

bool IsValidUtf8(std::string_view s) { return http::ToValidUtf8(s) == s; }

// Every error a parser returns is a client error (or 413) with a code and a message.
void CheckError(const http::ApiError& e) {
  Check(e.status == 400 || e.status == 413, "parser error is not 400/413");
  Check(!e.code.empty() && !e.message.empty(), "error without code or message");
  Check(e.field.empty() || e.field[0] == '/' || e.field[0] == '?', "field is not a pointer");
  Check(nlohmann::json::accept(e.ToJson()), "ApiError::ToJson is not valid JSON");
}

template <typename T>
const T* CheckResult(const http::ApiResult<T>& r) {
  if (r.index() == 1) {
    CheckError(std::get<1>(r));
    return nullptr;
  }
  return &std::get<0>(r);
}

void FuzzSpawn(std::string_view body) {
  const auto r = http::ParseSpawnBody(body, "fuzz");
  const wire::SpawnRequest* spawn = CheckResult(r);
  if (spawn == nullptr) return;
  Check(!spawn->task.empty() && spawn->task.size() <= http::kMaxSpawnTaskBytes, "task size");
  Check(spawn->labels.size() <= wire::kMaxLabels, "label count");
  // What the API accepts, the supervisor's strict decoder must accept, unchanged.
  wire::Request request;
  request.id = 1;
  request.body = *spawn;
  const auto encoded = wire::EncodeRequest(request);
  Check(encoded.has_value(), "an accepted spawn does not encode");
  const auto frame = wire::DecodeFrame(*encoded);
  Check(frame.has_value(), "an accepted spawn's frame does not decode");
  const auto decoded = wire::DecodeRequest(*frame);
  if (!decoded) {
    std::fprintf(stderr, "api_fuzz: supervisor refuses: %s\n", decoded.error().what.c_str());
    Die("an accepted spawn is refused by DecodeRequest");
  }
  Check(*decoded == request, "an accepted spawn changes on the wire");
}

void FuzzInput(std::string_view body) {
  const auto r = http::ParseInputBody(body);
  CheckResult(r);
}

void CheckPty(const wire::PtySize& p) {
  Check(p.rows >= 1 && p.rows <= wire::kMaxPtyDimension, "rows out of range");
  Check(p.cols >= 1 && p.cols <= wire::kMaxPtyDimension, "cols out of range");
}

void CheckSignal(int32_t s) { Check(s >= 1 && s <= wire::kMaxSignal, "signal out of range"); }

void FuzzResize(std::string_view body) {
  const auto r = http::ParseResizeBody(body);
  if (const auto* p = CheckResult(r)) CheckPty(*p);
}

void FuzzSignal(std::string_view body) {
  const auto r = http::ParseSignalBody(body);
  if (const auto* s = CheckResult(r)) CheckSignal(*s);
}

void FuzzWs(std::string_view text) {
  const auto r = http::ParseWsClientMessage(text);
  const http::WsClientMessage* m = CheckResult(r);
  if (m == nullptr) return;
  if (const auto* resize = std::get_if<http::WsResize>(m)) CheckPty(resize->size);
  if (const auto* signal = std::get_if<http::WsSignal>(m)) CheckSignal(signal->signal);
}

void FuzzRoute(std::string_view input) {
  static constexpr std::string_view kMethods[] = {"GET", "HEAD", "POST", "DELETE", "PUT", ""};
  if (input.empty()) return;
  const std::string_view method =
      kMethods[static_cast<unsigned char>(input[0]) % std::size(kMethods)];
  const http::MatchResult r = http::MatchRoute(method, input.substr(1));
  if (!r.match) {
    Check(r.failure != http::MatchFailure::kMethodNotAllowed || !r.allow.empty(),
          "405 without Allow");
    return;
  }
  const auto table = http::RouteTable();
  const auto index = static_cast<size_t>(r.match->route);
  Check(index < table.size(), "route outside the table");
  const bool has_id = table[index].path.find("{id}") != std::string_view::npos;
  Check(has_id != r.match->session_id.empty(), "session id presence");
  Check(r.match->session_id.find('/') == std::string::npos, "session id with '/'");
  Check(r.match->session_id.find('\0') == std::string::npos, "session id with NUL");
  for (const auto& [key, value] : r.match->query) {
    Check(key.find('\0') == std::string::npos && value.find('\0') == std::string::npos,
          "query with NUL");
  }
}

// Feeds the input to a Utf8Carry in pieces whose sizes come from a generator seeded by the
// first byte, and compares with decoding in one go.
void FuzzCarry(std::string_view input) {
  if (input.empty()) return;
  uint32_t state = static_cast<unsigned char>(input[0]) * 2654435761u + 1;
  const std::string_view bytes = input.substr(1);
  http::Utf8Carry carry;
  std::string out;
  size_t fed = 0;
  size_t consumed = 0;
  std::string_view rest = bytes;
  while (!rest.empty()) {
    state = state * 1664525u + 1013904223u;
    const size_t n = std::min<size_t>((state >> 24) % 9, rest.size());  // 0..8 bytes
    const size_t before = out.size();
    consumed += carry.Feed(rest.substr(0, n), &out);
    fed += n;
    rest.remove_prefix(n);
    Check(consumed + carry.carried() == fed, "consumed + carried != fed");
    Check(carry.carried() <= 3, "carried more than 3 bytes");
    Check(IsValidUtf8(std::string_view(out).substr(before)), "Feed emitted invalid UTF-8");
  }
  carry.Flush(&out);
  Check(carry.carried() == 0, "carry after Flush");
  Check(IsValidUtf8(out), "output is not valid UTF-8");
  Check(out == http::ToValidUtf8(bytes), "chunked output differs from whole");
}

// Small string parsers over the raw input.
void FuzzStrings(std::string_view input) {
  const std::string valid = http::ToValidUtf8(input);
  Check(IsValidUtf8(valid), "ToValidUtf8 is not idempotent");
  if (const auto decoded = http::PercentDecode(input)) {
    Check(decoded->find('\0') == std::string::npos, "PercentDecode produced NUL");
    Check(decoded->size() <= input.size(), "PercentDecode grew");
  }
  if (const auto signal = http::ParseSignal(input)) CheckSignal(*signal);
  if (const auto n = http::ParseUnsigned(input)) {
    Check(input.size() <= 20 && std::to_string(*n).size() <= input.size(), "ParseUnsigned");
  }
  const auto status = http::ParseStatusFilter(input);
  CheckResult(status);
}

// Builders: hostile strings and output bytes in, valid JSON out.
void FuzzBuilders(std::string_view input) {
  if (input.size() < 2) return;
  const bool starts_at_line = (input[0] & 1) != 0;
  const auto split = static_cast<size_t>(static_cast<unsigned char>(input[1])) % input.size();
  const std::string_view text = input.substr(0, split);
  const std::string_view output = input.substr(split);

  wire::SessionInfo info;
  info.id = "s-fuzz";
  info.task_preview = std::string(text);
  info.cwd = std::string(text);
  info.command = std::string(text);
  info.owner = std::string(text);
  info.labels = {std::string(text)};
  info.end = wire::EndRecord{};
  info.end->detail = std::string(text);
  info.end->ended_at_ms = static_cast<unsigned char>(input[0]);

  wire::OutputRead read;
  read.data.assign(output.begin(), output.end());
  // Chunks of alternating streams, sized from the data itself.
  size_t pos = 0;
  uint8_t stream = 0;
  while (pos < output.size()) {
    const size_t len =
        std::min<size_t>(1 + static_cast<unsigned char>(output[pos]) % 16, output.size() - pos);
    read.chunks.push_back(
        {static_cast<wire::OutputStream>(stream++ % 3), pos, static_cast<uint32_t>(len)});
    pos += len;
  }
  const std::string documents[] = {
      http::SessionDetailJson(info, 1, read, starts_at_line),
      http::WsCatchupJson(info, http::ToValidUtf8(output), 0, output.size()),
      http::WsOutputJson(wire::OutputStream::kStderr, http::ToValidUtf8(output), 0, 1),
      http::WsExitJson(info, *info.end, 0),
      http::WsErrorJson(http::BadRequest(std::string(text), std::string(text))),
  };
  for (const std::string& doc : documents) {
    // accept() refuses invalid UTF-8 as well as bad syntax.
    Check(nlohmann::json::accept(doc), "a builder produced invalid JSON");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch ((data[0] & 0x0F) % 9) {
    case 0:
      FuzzSpawn(input);
      break;
    case 1:
      FuzzInput(input);
      break;
    case 2:
      FuzzResize(input);
      break;
    case 3:
      FuzzSignal(input);
      break;
    case 4:
      FuzzWs(input);
      break;
    case 5:
      FuzzRoute(input);
      break;
    case 6:
      FuzzCarry(input);
      break;
    case 7:
      FuzzStrings(input);
      break;
    default:
      FuzzBuilders(input);
      break;
  }
  return 0;
}

// libFuzzer target for the control protocol's input surface: one raw SEQPACKET record through
// DecodeFrame, then the envelope as a request (supervisor side), as a supervisor message (API
// side), as an event and as a response. Whatever decodes must re-encode, and the re-encoded
// frame must decode to an equal value; a request fitted to protocol version 1 must need no
// newer one (common/proto_version.h); a finding aborts. Built with -fsanitize=fuzzer under the
// `fuzz` preset; the normal build links it with replay_main.cc to replay tests/fuzz/corpus/wire
// as a unit test (fuzz_replay.wire).
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

#include "common/messages.h"
#include "common/proto_version.h"
#include "common/wire.h"

namespace {

[[noreturn]] void Die(const char* what, const mp::Error& error) {
  std::fprintf(stderr, "wire_fuzz: %s: %s\n", what, error.ToString().c_str());
  std::abort();
}

// Re-encoding may only fail for size: the input's JSON can be denser than ours (defaults we
// write out, escapes we spell differently), so a value taken from a full frame may not fit.
template <typename T>
void CheckRoundTrip(const T& value, mp::Result<std::vector<uint8_t>> (*encode)(const T&),
                    mp::Result<T> (*decode)(const mp::wire::FrameView&)) {
  auto encoded = encode(value);
  if (!encoded) {
    if (encoded.error().errnum != EMSGSIZE) Die("re-encode", encoded.error());
    return;
  }
  auto frame = mp::wire::DecodeFrame(*encoded);
  if (!frame) Die("re-decode frame", frame.error());
  auto again = decode(*frame);
  if (!again) Die("re-decode envelope", again.error());
  if (!(*again == value)) {
    std::fprintf(stderr, "wire_fuzz: round trip changed the value: %.*s\n",
                 static_cast<int>(frame->json.size()), frame->json.data());
    std::abort();
  }
}

mp::Result<std::vector<uint8_t>> EncodeSupervisorMessage(const mp::wire::SupervisorMessage& m) {
  if (const auto* response = std::get_if<mp::wire::Response>(&m)) {
    return mp::wire::EncodeResponse(*response);
  }
  return mp::wire::EncodeEvent(std::get<mp::wire::Event>(m));
}

// common/proto_version.h: a request fitted to version 1 needs nothing newer and still
// round-trips; a request that needs version 2 names the member and says why.
void CheckVersions(const mp::wire::Request& request) {
  const mp::wire::ProtoNeed need = mp::wire::RequiredProto(request.body);
  if (need.version > mp::wire::kMinProtoVersion &&
      (need.field.empty() || need.what.rfind(need.field + ": ", 0) != 0)) {
    std::fprintf(stderr, "wire_fuzz: a version need without its member: %s\n", need.what.c_str());
    std::abort();
  }
  mp::wire::Request fitted = request;
  if (!mp::wire::FitToProto(fitted.body, mp::wire::kMinProtoVersion)) {
    if (!(fitted == request)) std::abort();  // a refusal leaves the request as it was
    return;
  }
  if (mp::wire::RequiredProto(fitted.body).version != mp::wire::kMinProtoVersion) std::abort();
  CheckRoundTrip<mp::wire::Request>(
      fitted, &mp::wire::EncodeRequest,
      [](const mp::wire::FrameView& f) { return mp::wire::DecodeRequest(f); });
}

void DecodeEverything(const mp::wire::FrameView& frame) {
  mp::wire::DecodeDetail detail;
  if (auto request = mp::wire::DecodeRequest(frame, &detail)) {
    CheckRoundTrip<mp::wire::Request>(
        *request, &mp::wire::EncodeRequest,
        [](const mp::wire::FrameView& f) { return mp::wire::DecodeRequest(f); });
    CheckVersions(*request);
  } else if (request.error().what.empty()) {
    std::abort();  // every refusal must say why
  }
  if (auto message = mp::wire::DecodeSupervisorMessage(frame)) {
    CheckRoundTrip<mp::wire::SupervisorMessage>(*message, &EncodeSupervisorMessage,
                                                &mp::wire::DecodeSupervisorMessage);
  }
  if (auto event = mp::wire::DecodeEvent(frame)) {
    CheckRoundTrip<mp::wire::Event>(*event, &mp::wire::EncodeEvent, &mp::wire::DecodeEvent);
  }
  if (auto response = mp::wire::DecodeResponse(frame)) {
    CheckRoundTrip<mp::wire::Response>(*response, &mp::wire::EncodeResponse,
                                       &mp::wire::DecodeResponse);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  if (auto frame = mp::wire::DecodeFrame(input)) {
    DecodeEverything(*frame);
    return 0;
  }
  // Most mutations break the exact-length rule, which DecodeFrame has just checked. So that
  // they still reach the envelope decoders, also decode the frame the header would describe:
  // json_len clamped to the bytes present, the rest as the data tail.
  if (size <= mp::wire::kFrameHeaderBytes || size > mp::wire::kMaxFrameBytes) return 0;
  const size_t body = size - mp::wire::kFrameHeaderBytes;
  const size_t declared = static_cast<size_t>(data[4]) | static_cast<size_t>(data[5]) << 8;
  const size_t json_len = declared == 0 || declared > body ? body : declared;
  mp::wire::FrameView repaired;
  repaired.json =
      std::string_view(reinterpret_cast<const char*>(data) + mp::wire::kFrameHeaderBytes, json_len);
  repaired.data = input.subspan(mp::wire::kFrameHeaderBytes + json_len);
  DecodeEverything(repaired);
  return 0;
}

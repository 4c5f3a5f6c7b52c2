// UTF-8 for WebSocket text frames: output arrives in arbitrary chunks, so a character can be
// split across two reads. Utf8Carry holds the incomplete tail of one stream until the rest
// arrives and replaces bytes that can never form valid UTF-8 with U+FFFD. Runs in
// monkeyproof-api, one instance per (client, stream). Not thread-safe; no syscalls.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mp::http {

class Utf8Carry {
 public:
  // Appends the valid UTF-8 of (carried bytes + `bytes`) to *out. An incomplete sequence at
  // the end (at most 3 bytes) is kept for the next call; invalid bytes (overlong forms,
  // surrogates, > U+10FFFF, stray continuation bytes, a lead byte cut short) each become
  // U+FFFD. Returns the number of input bytes now consumed for good, counting those
  // carried in from before and excluding those carried out.
  size_t Feed(std::string_view bytes, std::string* out);
  // Emits U+FFFD for a carried incomplete sequence (the stream ended or was cut).
  void Flush(std::string* out);
  [[nodiscard]] size_t carried() const { return carry_len_; }

 private:
  char carry_[4] = {};
  size_t carry_len_ = 0;
};

// Valid UTF-8 of `bytes` in one go (invalid bytes and a cut tail become U+FFFD).
std::string ToValidUtf8(std::string_view bytes);

}  // namespace mp::http

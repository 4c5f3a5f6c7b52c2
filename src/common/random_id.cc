#include "common/random_id.h"

#include <sys/random.h>

#include <cerrno>

namespace mp::common {
namespace {

ssize_t GetRandom(void* buf, size_t len) { return ::getrandom(buf, len, 0); }

}  // namespace

Result<std::string> RandomIdFrom(RandomFill fill, std::string_view alphabet, size_t length) {
  if (alphabet.size() < 2 || alphabet.size() > 256) {
    return PlainError("random id: an alphabet of " + std::to_string(alphabet.size()) +
                      " characters (2..256 needed)");
  }
  // Bytes at or above `limit` are dropped: below it, every character has the same number of
  // byte values (256 / size of them), so `byte % size` is uniform.
  const unsigned limit = 256 - 256 % alphabet.size();
  std::string id;
  id.reserve(length);
  unsigned char buf[64];
  while (id.size() < length) {
    // A read of up to 256 bytes is never cut short by a signal once the pool is initialised,
    // but a first read at boot may block and be interrupted, and `fill` may be a fake.
    const ssize_t n = fill(buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("getrandom(" + std::to_string(sizeof buf) + " bytes)");
    }
    if (n == 0) return PlainError("getrandom: no bytes");  // never for the kernel; a fake's end
    for (ssize_t i = 0; i < n && id.size() < length; ++i) {
      if (buf[i] < limit) id += alphabet[buf[i] % alphabet.size()];
    }
  }
  return id;
}

Result<std::string> RandomId(std::string_view alphabet, size_t length) {
  return RandomIdFrom(&GetRandom, alphabet, length);
}

}  // namespace mp::common

// Random identifiers and secrets (session ids, boot ids, dev-mode tokens): `length` characters
// drawn uniformly from an alphabet with getrandom(2), which blocks only until the kernel's pool
// is first initialised. Any process, any thread; no state.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.h"

namespace mp::common {

inline constexpr std::string_view kHexAlphabet = "0123456789abcdef";
inline constexpr std::string_view kAlnumAlphabet =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

// `length` characters of `alphabet` (2..256 characters). Each position is uniform over the
// alphabet: bytes that would bias the modulo are drawn again. Errors: an alphabet of the wrong
// size, or getrandom failing with an errno other than EINTR.
Result<std::string> RandomId(std::string_view alphabet, size_t length);

// The same with the byte source injected (tests: short reads, EINTR, failures). `fill` behaves
// like getrandom(buf, len, 0): the count of bytes written, or -1 with errno set.
using RandomFill = ssize_t (*)(void* buf, size_t len);
Result<std::string> RandomIdFrom(RandomFill fill, std::string_view alphabet, size_t length);

}  // namespace mp::common

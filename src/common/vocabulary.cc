#include "common/vocabulary.h"

#include <cstddef>

namespace mp::common {
namespace {

template <typename E, size_t N>
std::string_view NameOf(E v, const std::array<std::string_view, N>& names) {
  const auto i = static_cast<size_t>(v);
  return i < N ? names[i] : std::string_view("invalid");
}

}  // namespace

std::string_view ToString(SessionType v) { return NameOf(v, kSessionTypeNames); }
std::string_view ToString(NetworkMode v) { return NameOf(v, kNetworkModeNames); }
std::string_view ToString(FloodAction v) { return NameOf(v, kFloodActionNames); }
std::string_view ToString(EndReason v) { return NameOf(v, kEndReasonNames); }

}  // namespace mp::common

#include "common/result.h"

#include <cstring>

namespace mp {

Error Error::Wrap(std::string_view context) const& {
  Error copy = *this;
  return std::move(copy).Wrap(context);
}

Error Error::Wrap(std::string_view context) && {
  std::string wrapped;
  wrapped.reserve(context.size() + 2 + what.size());
  wrapped.append(context);
  wrapped.append(": ");
  wrapped.append(what);
  what = std::move(wrapped);
  return std::move(*this);
}

std::string Error::ToString() const {
  if (errnum == 0) return what;
  const char* name = strerrorname_np(errnum);
  std::string out = what;
  out += ": ";
  out += name != nullptr ? name : ("errno " + std::to_string(errnum));
  out += " (";
  out += strerrordesc_np(errnum) != nullptr ? strerrordesc_np(errnum) : "unknown error";
  out += ")";
  return out;
}

Error Error::At(std::string pointer) && {
  field = std::move(pointer);
  return std::move(*this);
}

Error ErrnoError(std::string what) { return Error{errno, std::move(what)}; }
Error ErrnoError(int errnum, std::string what) { return Error{errnum, std::move(what)}; }
Error PlainError(std::string what) { return Error{0, std::move(what)}; }
Error CodedError(ErrorCode code, std::string what, int errnum) {
  return Error{errnum, std::move(what), code};
}

std::string_view ToString(ErrorCode code) {
  const auto i = static_cast<size_t>(code);
  return i < kErrorCodeNames.size() ? kErrorCodeNames[i] : std::string_view("invalid");
}

}  // namespace mp

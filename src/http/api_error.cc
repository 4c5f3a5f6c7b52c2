#include "http/api_error.h"

#include <utility>

#include <nlohmann/json.hpp>

namespace mp::http {

std::string ApiError::ToJson() const {
  nlohmann::ordered_json j;
  j["error"] = message;
  j["code"] = code;
  if (!field.empty()) j["field"] = field;
  // `replace`: a message or field may quote client input that is not valid UTF-8.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

ApiError BadRequest(std::string message, std::string field) {
  return ApiError{400, "bad_request", std::move(message), std::move(field)};
}

ApiError NotFound(std::string message) {
  return ApiError{404, "not_found", std::move(message), {}};
}

ApiError FromSupervisor(const wire::ErrorBody& error) {
  int status = 500;
  switch (error.code) {
    case wire::ErrorCode::kBadRequest:
      status = 400;
      break;
    case wire::ErrorCode::kNotFound:
      status = 404;
      break;
    case wire::ErrorCode::kWrongState:
      status = 409;
      break;
    case wire::ErrorCode::kCapacity:
      status = 429;
      break;
    case wire::ErrorCode::kPolicyViolation:
      status = 403;
      break;
    case wire::ErrorCode::kInternal:
      status = 500;
      break;
    case wire::ErrorCode::kUnavailable:
      status = 503;
      break;
    case wire::ErrorCode::kTooLarge:
      status = 413;
      break;
    case wire::ErrorCode::kHostSetup:
      // The server's fault, and no retry helps until an operator acts (unlike 503).
      status = 500;
      break;
    case wire::ErrorCode::kInsufficientStorage:
      status = 507;
      break;
  }
  return ApiError{status, std::string(wire::ToString(error.code)), error.message, error.field};
}

ApiError TransportError(const Error& error) { return ApiError{503, "unavailable", error.what, {}}; }

}  // namespace mp::http

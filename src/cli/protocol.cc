#include "cli/protocol.h"

#include <nlohmann/json.hpp>

namespace mp::cli {
namespace {

using nlohmann::json;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// Serialises, refusing strings that are not UTF-8 (nlohmann throws type_error 316 on them).
Result<std::string> Dump(const json& value, std::string_view what) {
  try {
    return value.dump();
  } catch (const json::exception&) {
    return PlainError(std::string(what) + " is not valid UTF-8");
  }
}

json ParseObject(std::string_view text) {
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!value.is_object()) return json();
  return value;
}

std::optional<uint64_t> U64Member(const json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end() || !it->is_number_unsigned()) return std::nullopt;
  return it->get<uint64_t>();
}

std::string StringMember(const json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

Result<uint64_t> RequiredHeader(const HttpResponse& response, std::string_view name) {
  const std::string* value = response.Header(name);
  if (value == nullptr) {
    return PlainError("the server's answer lacks the " + std::string(name) + " header");
  }
  const std::optional<uint64_t> number = ParseDecimal(*value);
  if (!number) {
    return PlainError("the server's " + std::string(name) + " header is not a number: '" + *value +
                      "'");
  }
  return *number;
}

}  // namespace

const std::string* HttpResponse::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return &value;
  }
  return nullptr;
}

std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

std::string SessionPath(std::string_view id, std::string_view suffix) {
  return "/sessions/" + UrlEncode(id) + std::string(suffix);
}

std::string ListPath(const LsCommand& ls) {
  std::string path = "/sessions";
  char sep = '?';
  const auto add = [&](std::string_view key, std::string_view value) {
    path += sep;
    path += key;
    path += '=';
    path += UrlEncode(value);
    sep = '&';
  };
  if (ls.owner) add("owner", *ls.owner);
  if (ls.label) add("label", *ls.label);
  if (ls.status) add("status", *ls.status);
  if (ls.limit) add("limit", std::to_string(*ls.limit));
  return path;
}

std::string SpawnBody(const RunCommand& run, std::optional<std::pair<int, int>> pty) {
  json body = json::object();
  body["task"] = run.task;
  if (!run.type.empty()) body["type"] = run.type;
  if (run.preset) body["preset"] = *run.preset;
  if (run.cwd) body["cwd"] = *run.cwd;
  if (run.owner) body["owner"] = *run.owner;
  if (!run.labels.empty()) body["labels"] = run.labels;
  if (!run.env.empty()) {
    json env = json::object();
    for (const auto& [key, value] : run.env) env[key] = value;
    body["env"] = std::move(env);
  }
  if (run.max_turns) body["maxTurns"] = *run.max_turns;
  json limits = json::object();
  if (run.memory_bytes) limits["memoryMaxBytes"] = *run.memory_bytes;
  if (run.wall_seconds) limits["wallSeconds"] = *run.wall_seconds;
  if (!limits.empty()) body["limits"] = std::move(limits);
  if (pty && run.type == "interactive") {
    body["pty"] = json{{"rows", pty->first}, {"cols", pty->second}};
  }
  // Words that are not UTF-8 become U+FFFD rather than failing: JSON cannot carry them.
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::string> InputBody(std::string_view text) {
  return Dump(json{{"input", std::string(text)}}, "the input");
}

std::string WsResizeJson(int rows, int cols) {
  return json{{"type", "resize"}, {"rows", rows}, {"cols", cols}}.dump();
}

std::string WsCloseStdinJson() { return R"({"type":"close-stdin"})"; }

std::optional<std::string> JsonStringMember(std::string_view text, std::string_view member) {
  const json object = ParseObject(text);
  if (!object.is_object()) return std::nullopt;
  const auto it = object.find(std::string(member));
  if (it == object.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::optional<int64_t> JsonIntegerMember(std::string_view text, std::string_view member) {
  const json object = ParseObject(text);
  if (!object.is_object()) return std::nullopt;
  const auto it = object.find(std::string(member));
  if (it == object.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

Result<std::vector<std::pair<uint64_t, uint64_t>>> ParseGaps(std::string_view text) {
  std::vector<std::pair<uint64_t, uint64_t>> gaps;
  const std::string all(text);
  if (text.empty()) return gaps;
  while (true) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    const size_t dash = item.find('-');
    const std::optional<uint64_t> from =
        dash == std::string_view::npos ? std::nullopt : ParseDecimal(item.substr(0, dash));
    const std::optional<uint64_t> to =
        dash == std::string_view::npos ? std::nullopt : ParseDecimal(item.substr(dash + 1));
    if (!from || !to || *from > *to) {
      return PlainError("the server's x-output-gaps header is malformed: '" + all + "'");
    }
    gaps.emplace_back(*from, *to);
    if (comma == std::string_view::npos) return gaps;
    text.remove_prefix(comma + 1);
  }
}

Result<OutputChunk> ParseOutputHeaders(const HttpResponse& response) {
  OutputChunk chunk;
  MP_TRY(chunk.offset, RequiredHeader(response, "x-output-offset"));
  MP_TRY(chunk.next, RequiredHeader(response, "x-output-next-offset"));
  MP_TRY(chunk.total, RequiredHeader(response, "x-output-total-size"));
  const std::string* ended = response.Header("x-output-ended");
  chunk.ended = ended != nullptr && EqualsIgnoreCase(*ended, "true");
  if (const std::string* gaps = response.Header("x-output-gaps")) {
    MP_TRY(chunk.gaps, ParseGaps(*gaps));
  }
  return chunk;
}

Result<ServerMessage> ParseServerMessage(std::string_view text) {
  const json object = ParseObject(text);
  if (!object.is_object()) return PlainError("the server sent a message that is not a JSON object");
  ServerMessage msg;
  msg.type = StringMember(object, "type");
  using Kind = ServerMessage::Kind;
  if (msg.type == "catchup") {
    msg.kind = Kind::kCatchup;
  } else if (msg.type == "stdout") {
    msg.kind = Kind::kStdout;
  } else if (msg.type == "stderr") {
    msg.kind = Kind::kStderr;
  } else if (msg.type == "gap") {
    msg.kind = Kind::kGap;
  } else if (msg.type == "lagged") {
    msg.kind = Kind::kLagged;
  } else if (msg.type == "killed") {
    msg.kind = Kind::kKilled;
  } else if (msg.type == "exit") {
    msg.kind = Kind::kExit;
  } else if (msg.type == "error") {
    msg.kind = Kind::kError;
  }
  msg.data = StringMember(object, "data");
  const std::optional<uint64_t> offset = U64Member(object, "offset");
  const std::optional<uint64_t> next = U64Member(object, "next");
  if (offset && next && *next >= *offset) {
    msg.has_offsets = true;
    msg.offset = *offset;
    msg.next = *next;
  }
  msg.from = U64Member(object, "from").value_or(0);
  msg.to = U64Member(object, "to").value_or(0);
  msg.resume_from = U64Member(object, "resumeFrom").value_or(0);
  if (const auto it = object.find("code"); it != object.end() && it->is_number_integer()) {
    msg.code = it->get<int64_t>();
  }
  if (const auto it = object.find("signal"); it != object.end() && it->is_number_integer()) {
    msg.signal = it->get<int64_t>();
  }
  msg.reason = StringMember(object, "reason");
  msg.error = StringMember(object, "error");
  if (msg.kind == Kind::kError) msg.error_code = StringMember(object, "code");
  return msg;
}

std::string_view OutputCursor::Accept(const ServerMessage& msg) {
  using Kind = ServerMessage::Kind;
  switch (msg.kind) {
    case Kind::kCatchup:
    case Kind::kStdout:
    case Kind::kStderr: {
      if (!msg.has_offsets) return msg.data;
      if (msg.next <= next_) return {};  // already written before a reconnect
      std::string_view data = msg.data;
      if (msg.offset < next_ && msg.next - msg.offset == data.size()) {
        data.remove_prefix(static_cast<size_t>(next_ - msg.offset));
      }
      next_ = msg.next;
      return data;
    }
    case Kind::kGap:
      if (msg.to > next_) next_ = msg.to;
      return {};
    default:
      return {};
  }
}

int ExitStatusFromCode(int64_t code) {
  if (code < 0) return 1;
  if (code > 255) return 255;
  return static_cast<int>(code);
}

}  // namespace mp::cli

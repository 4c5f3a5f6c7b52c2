#include "cli/format.h"

#include <string.h>  // sigabbrev_np

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace mp::cli {
namespace {

using nlohmann::json;

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr std::string_view kEllipsis = "\xE2\x80\xA6";     // U+2026

// Decodes one UTF-8 sequence at text[i]; returns its length and sets cp, or 0 when the bytes
// there are not UTF-8 (overlong forms, surrogates and values past U+10FFFF included).
size_t DecodeUtf8(std::string_view text, size_t i, uint32_t& cp) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  size_t len = 0;
  uint32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2;
    cp = b0 & 0x1Fu;
    min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    cp = b0 & 0x0Fu;
    min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4;
    cp = b0 & 0x07u;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > text.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

const json* Member(const json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

// A member as display text: strings sanitised (one line), numbers and booleans printed;
// `fallback` when absent or null.
std::string Text(const json& object, const char* name, std::string_view fallback = "-") {
  const json* value = Member(object, name);
  if (value == nullptr) return std::string(fallback);
  if (value->is_string()) {
    const std::string s = Sanitize(value->get<std::string>(), false);
    return s.empty() ? std::string(fallback) : s;
  }
  if (value->is_number_integer() || value->is_number_unsigned() || value->is_boolean()) {
    return value->dump();
  }
  if (value->is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", value->get<double>());
    return buf;
  }
  return std::string(fallback);
}

std::optional<int64_t> Integer(const json& object, const char* name) {
  const json* value = Member(object, name);
  if (value == nullptr || !value->is_number_integer()) return std::nullopt;
  return value->get<int64_t>();
}

std::string SignalText(int64_t signal) {
  std::string out = std::to_string(signal);
  if (signal > 0 && signal < 65) {
    if (const char* name = sigabbrev_np(static_cast<int>(signal))) {
      out += " (SIG";
      out += name;
      out += ")";
    }
  }
  return out;
}

// STATUS of the ls table: the exact state (the public status from a server without one; it
// reads "exited" for a killed exec session, as the original's did) and how it ended:
// "exited (0)", "killed (SIGKILL)", "failed", "starting".
std::string StatusCell(const json& session) {
  std::string state = Text(session, "state", "");
  if (state == "failed" || state == "starting") return state;
  const std::string status = state.empty() ? Text(session, "status") : state;
  if (const std::optional<int64_t> signal = Integer(session, "signal"); signal && *signal > 0) {
    const char* name = *signal < 65 ? sigabbrev_np(static_cast<int>(*signal)) : nullptr;
    return status + " (" + (name != nullptr ? "SIG" + std::string(name) : SignalText(*signal)) +
           ")";
  }
  if (const std::optional<int64_t> code = Integer(session, "exitCode")) {
    return status + " (" + std::to_string(*code) + ")";
  }
  return status;
}

std::string AgeCell(const json& session, int64_t now_ms) {
  const json* created = Member(session, "createdAt");
  if (created == nullptr || !created->is_string()) return "-";
  const std::optional<int64_t> ms = ParseIsoTimeMs(created->get<std::string>());
  return ms ? FormatAge(now_ms - *ms) : "-";
}

std::string CommandCell(const json& session) {
  for (const char* name : {"command", "taskPreview", "task"}) {
    std::string text = Text(session, name, "");
    if (!text.empty()) return text;
  }
  return "-";
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool ReadDigits(std::string_view text, size_t& pos, size_t count, int64_t& out) {
  if (pos + count > text.size()) return false;
  out = 0;
  for (size_t i = 0; i < count; ++i) {
    const char c = text[pos + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  pos += count;
  return true;
}

bool Expect(std::string_view text, size_t& pos, char c) {
  if (pos >= text.size() || text[pos] != c) return false;
  ++pos;
  return true;
}

std::string OneDecimal(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", value);
  return buf;
}

void AddLine(std::string& out, std::string_view label, std::string_view value) {
  out += label;
  out += ':';
  out.append(label.size() < 13 ? 13 - label.size() : 1, ' ');
  out += value;
  out += '\n';
}

}  // namespace

std::string Sanitize(std::string_view text, bool keep_newlines) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const size_t len = DecodeUtf8(text, i, cp);
    if (len == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    if (cp == '\n') {
      out += keep_newlines ? '\n' : ' ';
    } else if (cp == '\t') {
      out += ' ';
    } else if (cp == '\r') {
      // Terminal output ends lines with "\r\n"; a lone CR would overwrite the line.
      if (!keep_newlines) out += ' ';
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
      out += '?';
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

size_t DisplayWidth(std::string_view utf8) {
  return static_cast<size_t>(std::count_if(utf8.begin(), utf8.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

std::string TruncateToWidth(std::string_view utf8, size_t width) {
  if (DisplayWidth(utf8) <= width) return std::string(utf8);
  if (width == 0) return {};
  size_t kept = 0;
  size_t end = 0;
  while (end < utf8.size()) {
    if ((static_cast<unsigned char>(utf8[end]) & 0xC0) != 0x80) {
      if (kept == width - 1) break;
      ++kept;
    }
    ++end;
  }
  return std::string(utf8.substr(0, end)) + std::string(kEllipsis);
}

std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows, size_t terminal_width,
                        size_t last_column_max) {
  const size_t columns = header.size();
  if (columns == 0) return {};
  std::vector<size_t> widths(columns, 0);
  const auto measure = [&](const std::vector<std::string>& row) {
    for (size_t c = 0; c + 1 < columns && c < row.size(); ++c) {
      widths[c] = std::max(widths[c], DisplayWidth(row[c]));
    }
  };
  measure(header);
  for (const auto& row : rows) measure(row);

  size_t last_limit = last_column_max;
  if (terminal_width > 0) {
    size_t used = 0;
    for (size_t c = 0; c + 1 < columns; ++c) used += widths[c] + 2;
    constexpr size_t kMinLast = 10;  // below this, overflow the terminal rather than say nothing
    last_limit = terminal_width > used + kMinLast ? terminal_width - used : kMinLast;
  }

  std::string out;
  const auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < columns; ++c) {
      const std::string empty;
      const std::string& cell = c < row.size() ? row[c] : empty;
      if (c + 1 < columns) {
        line += cell;
        line.append(widths[c] - DisplayWidth(cell) + 2, ' ');
      } else {
        line += last_limit > 0 ? TruncateToWidth(cell, last_limit) : cell;
      }
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  };
  emit(header);
  for (const auto& row : rows) emit(row);
  return out;
}

std::optional<int64_t> ParseIsoTimeMs(std::string_view text) {
  size_t pos = 0;
  int64_t year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!ReadDigits(text, pos, 4, year) || !Expect(text, pos, '-') ||
      !ReadDigits(text, pos, 2, month) || !Expect(text, pos, '-') ||
      !ReadDigits(text, pos, 2, day)) {
    return std::nullopt;
  }
  if (pos >= text.size() || (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ')) {
    return std::nullopt;
  }
  ++pos;
  if (!ReadDigits(text, pos, 2, hour) || !Expect(text, pos, ':') ||
      !ReadDigits(text, pos, 2, minute) || !Expect(text, pos, ':') ||
      !ReadDigits(text, pos, 2, second)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  int64_t millis = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int64_t scale = 100;
    size_t digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      millis += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
      ++digits;
    }
    if (digits == 0) return std::nullopt;
  }
  int64_t offset_minutes = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const int64_t sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int64_t oh = 0, om = 0;
    if (!ReadDigits(text, pos, 2, oh) || !Expect(text, pos, ':') || !ReadDigits(text, pos, 2, om)) {
      return std::nullopt;
    }
    offset_minutes = sign * (oh * 60 + om);
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  const int64_t days =
      DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  const int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
  return seconds * 1000 + millis;
}

std::string FormatAge(int64_t milliseconds) {
  if (milliseconds < 0) return "0s";
  const int64_t s = milliseconds / 1000;
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m";
  if (s < int64_t{48} * 3600) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0)) return "-";
  char buf[48];
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
  } else if (seconds < 3600) {
    const auto s = static_cast<int64_t>(seconds);
    std::snprintf(buf, sizeof buf, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
  } else {
    const auto s = static_cast<int64_t>(seconds);
    std::snprintf(buf, sizeof buf, "%" PRId64 "h%02" PRId64 "m", s / 3600, (s / 60) % 60);
  }
  return buf;
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  return OneDecimal(value) + " " + kUnits[unit];
}

Result<std::string> FormatSessionTable(std::string_view json_array, int64_t now_ms,
                                       size_t terminal_width) {
  const json sessions = json::parse(json_array, nullptr, /*allow_exceptions=*/false);
  if (!sessions.is_array()) return PlainError("the server's session list is not a JSON array");
  std::vector<std::vector<std::string>> rows;
  rows.reserve(sessions.size());
  for (const json& session : sessions) {
    if (!session.is_object()) continue;
    rows.push_back({Text(session, "id"), StatusCell(session), Text(session, "type"),
                    AgeCell(session, now_ms), Text(session, "owner"), CommandCell(session)});
  }
  return FormatTable({"ID", "STATUS", "TYPE", "AGE", "OWNER", "COMMAND"}, rows, terminal_width,
                     terminal_width == 0 ? 60 : 0);
}

Result<std::string> FormatSessionDetail(std::string_view json_object, int64_t now_ms,
                                        size_t tail_lines) {
  const json s = json::parse(json_object, nullptr, /*allow_exceptions=*/false);
  if (!s.is_object()) return PlainError("the server's session detail is not a JSON object");
  std::string out;
  AddLine(out, "ID", Text(s, "id"));
  std::string status = Text(s, "status");
  if (const std::string state = Text(s, "state", ""); !state.empty() && state != status) {
    status += " (" + state + ")";
  }
  AddLine(out, "Status", status);
  if (Member(s, "endReason") != nullptr) {
    std::string text = Text(s, "endReason");
    if (const std::string detail = Text(s, "endDetail", ""); !detail.empty()) {
      text += ": " + detail;
    }
    AddLine(out, "End reason", text);
  }
  if (const std::optional<int64_t> code = Integer(s, "exitCode")) {
    AddLine(out, "Exit code", std::to_string(*code));
  }
  if (const std::optional<int64_t> signal = Integer(s, "signal")) {
    AddLine(out, "Signal", SignalText(*signal));
  }
  AddLine(out, "Type", Text(s, "type"));
  if (Member(s, "preset") != nullptr) AddLine(out, "Preset", Text(s, "preset"));
  if (Member(s, "owner") != nullptr) AddLine(out, "Owner", Text(s, "owner"));
  if (const json* labels = Member(s, "labels"); labels != nullptr && labels->is_array()) {
    std::string text;
    for (const json& label : *labels) {
      if (!label.is_string()) continue;
      if (!text.empty()) text += ", ";
      text += Sanitize(label.get<std::string>(), false);
    }
    if (!text.empty()) AddLine(out, "Labels", text);
  }
  const std::string created = Text(s, "createdAt");
  const std::optional<int64_t> created_ms = ParseIsoTimeMs(created);
  AddLine(out, "Created",
          created + (created_ms ? " (" + FormatAge(now_ms - *created_ms) + " ago)" : ""));
  if (Member(s, "endedAt") != nullptr) {
    const std::string ended = Text(s, "endedAt");
    const std::optional<int64_t> ended_ms = ParseIsoTimeMs(ended);
    std::string text = ended;
    if (created_ms && ended_ms) {
      text +=
          " (after " + FormatDuration(static_cast<double>(*ended_ms - *created_ms) / 1000.0) + ")";
    }
    AddLine(out, "Ended", text);
  }
  if (Member(s, "pid") != nullptr) AddLine(out, "PID", Text(s, "pid"));
  AddLine(out, "Cwd", Text(s, "cwd"));
  const std::string command = Text(s, "command");
  AddLine(out, "Command", command);
  const std::string task = Text(s, "task", "");
  if (!task.empty() && command.find(task) == std::string::npos) {
    AddLine(out, "Task", TruncateToWidth(task, 200));
  }
  if (const json* pty = Member(s, "pty"); pty != nullptr && pty->is_object()) {
    AddLine(out, "Terminal", Text(*pty, "rows") + "x" + Text(*pty, "cols"));
  }
  {
    std::string output;
    if (const std::optional<int64_t> bytes = Integer(s, "outputBytes"); bytes && *bytes >= 0) {
      output = std::to_string(*bytes) + " bytes";
    }
    if (const std::optional<int64_t> lines = Integer(s, "outputLines")) {
      output += (output.empty() ? "" : ", ") + std::to_string(*lines) + " lines";
    }
    if (!output.empty()) AddLine(out, "Output", output);
  }
  if (Member(s, "wsClients") != nullptr) AddLine(out, "Watchers", Text(s, "wsClients"));
  if (const json* res = Member(s, "resources"); res != nullptr && res->is_object()) {
    if (const std::optional<int64_t> v = Integer(*res, "memoryPeakBytes"); v && *v >= 0) {
      AddLine(out, "Memory peak", FormatBytes(static_cast<uint64_t>(*v)));
    }
    if (const std::optional<int64_t> v = Integer(*res, "cpuUsageUsec"); v && *v >= 0) {
      AddLine(out, "CPU time", FormatDuration(static_cast<double>(*v) / 1e6));
    }
    if (const std::optional<int64_t> v = Integer(*res, "pidsPeak"); v && *v >= 0) {
      AddLine(out, "PIDs peak", std::to_string(*v));
    }
  }

  const json* recent = Member(s, "recentOutput");
  std::string_view text;
  std::string recent_text;
  if (recent != nullptr && recent->is_string()) {
    recent_text = recent->get<std::string>();
    text = recent_text;
  }
  if (text.empty() || tail_lines == 0) {
    if (tail_lines > 0) out += "\nRecent output: none\n";
    return out;
  }
  if (text.back() == '\n') text.remove_suffix(1);
  std::vector<std::string_view> lines;
  while (true) {
    const size_t nl = text.find('\n');
    lines.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  if (lines.size() > tail_lines) {
    lines.erase(lines.begin(), lines.end() - static_cast<std::ptrdiff_t>(tail_lines));
  }
  out += "\nRecent output (last " + std::to_string(lines.size()) + " lines):\n";
  for (const std::string_view line : lines) {
    out += "  ";
    out += Sanitize(line, false);
    out += '\n';
  }
  return out;
}

Result<std::string> FormatPolicyTable(std::string_view json_object, size_t terminal_width) {
  const json body = json::parse(json_object, nullptr, /*allow_exceptions=*/false);
  const json* policies = Member(body, "policies");
  if (policies == nullptr || !policies->is_array()) {
    return PlainError("the server's policy list has no \"policies\" array");
  }
  std::vector<std::vector<std::string>> rows;
  for (const json& policy : *policies) {
    if (!policy.is_object()) continue;
    std::string bypass = "-";
    if (const json* b = Member(policy, "bypassesAgentPermissions"); b && b->is_boolean()) {
      bypass = b->get<bool>() ? "yes" : "no";
    }
    // The policy's limits ("-" from a server that does not report them); a deadline of 0 is
    // none.
    std::string memory = "-";
    std::string wall = "-";
    std::string idle = "-";
    if (const json* limits = Member(policy, "limits"); limits != nullptr && limits->is_object()) {
      if (const std::optional<int64_t> v = Integer(*limits, "memoryMaxBytes"); v && *v > 0) {
        memory = FormatBytes(static_cast<uint64_t>(*v));
      }
      const auto deadline = [&](const char* key) -> std::string {
        const std::optional<int64_t> v = Integer(*limits, key);
        if (!v || *v < 0) return "-";
        return *v == 0 ? "none" : FormatDuration(static_cast<double>(*v));
      };
      wall = deadline("wallSeconds");
      idle = deadline("idleSeconds");
    }
    rows.push_back({Text(policy, "name"), Text(policy, "type"), bypass, Text(policy, "network"),
                    memory, wall, idle, Text(policy, "description")});
  }
  return FormatTable(
      {"NAME", "TYPE", "BYPASSES-PROMPTS", "NETWORK", "MEMORY", "WALL", "IDLE", "DESCRIPTION"},
      rows, terminal_width, 0);
}

std::string FormatHttpError(const HttpResponse& response, std::string_view token_source,
                            std::string_view session) {
  std::string message;
  const json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  const json* error = Member(body, "error");
  std::string text;
  std::string code;
  std::string field;
  if (error != nullptr && error->is_string()) {
    text = Text(body, "error", "");
    code = Text(body, "code", "");
    field = Text(body, "field", "");
  } else if (error != nullptr && error->is_object()) {  // {"error":{"code","message","field"}}
    text = Text(*error, "message", "");
    code = Text(*error, "code", "");
    field = Text(*error, "field", "");
  }
  if (!text.empty()) {
    message = text + " (" + (code.empty() ? "HTTP " + std::to_string(response.status) : code);
    if (!field.empty()) message += ", field " + field;
    message += ")";
  } else {
    message = "HTTP " + std::to_string(response.status);
    if (!response.reason.empty()) message += " " + Sanitize(response.reason, false);
    std::string_view first_line = response.body;
    first_line = first_line.substr(0, first_line.find('\n'));
    if (!first_line.empty()) message += ": " + TruncateToWidth(Sanitize(first_line, false), 200);
  }
  if (response.status == 401 && (text == "token revoked" || text.starts_with("token expired"))) {
    // A scoped token that was good once: no other source of the token will fix it.
    message +=
        "; this scoped token can no longer be used: ask whoever minted it for a new one "
        "(monkeyproof token create); the token came from ";
    message += token_source.empty() ? "an unknown source" : std::string(token_source);
  } else if (response.status == 401) {
    message +=
        "; check the token (--token, --token-file, MONKEYPROOF_TOKEN, MONKEYPROOF_TOKEN_FILE, "
        "or token/token_file in the config file): ";
    message +=
        token_source.empty() ? "none was given" : "it came from " + std::string(token_source);
  }
  if (const std::string* retry = response.Header("retry-after")) {
    message += "; retry after " + Sanitize(*retry, false) + " s";
  }
  // Input to an unknown session is a 400 with code not_found (the original's status).
  if (!session.empty() && (code == "not_found" || (code.empty() && response.status == 404))) {
    message = "no session " + Sanitize(session, false) + ": " + message +
              "; list the sessions with: monkeyproof ls";
  }
  return message;
}

}  // namespace mp::cli

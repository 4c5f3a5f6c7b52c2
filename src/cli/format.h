// Human-readable output of the `monkeyproof` client: session tables and details, the policy
// table, times, sizes, and error messages built from the server's JSON error bodies. Runs in
// the CLI only. Pure functions (the caller passes the current time and terminal width); no
// exceptions escape. Text that comes from the server (commands, tasks, output) is sanitised
// here so that it cannot drive the operator's terminal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/protocol.h"
#include "common/result.h"

namespace mp::cli {

// Replaces C0 and C1 control characters and DEL with '?' (tab becomes a space; newlines are kept
// when keep_newlines, else become spaces), and bytes that are not UTF-8 with U+FFFD.
std::string Sanitize(std::string_view text, bool keep_newlines);
// The number of code points of valid UTF-8 text (a stand-in for its display width).
size_t DisplayWidth(std::string_view utf8);
// Cuts valid UTF-8 text to at most `width` code points, the last being "…" when cut.
std::string TruncateToWidth(std::string_view utf8, size_t width);

// Left-aligned columns separated by two spaces, a header row first, lines ending in '\n'.
// The last column is cut to fit `terminal_width` (when non-zero), and to at most
// `last_column_max` code points otherwise (0: no limit). Cells must be sanitised already.
std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows, size_t terminal_width,
                        size_t last_column_max);

// "2026-11-21T19:31:44.759Z" (fraction optional, 'Z' or +HH:MM offsets) to Unix milliseconds.
std::optional<int64_t> ParseIsoTimeMs(std::string_view text);
// "42s", "5m", "3h", "12d"; negative spans (clock skew) are "0s".
std::string FormatAge(int64_t milliseconds);
// "1.5s", "2m05s", "3h07m".
std::string FormatDuration(double seconds);
// "512 B", "1.5 KiB", "12.0 MiB".
std::string FormatBytes(uint64_t bytes);

// `ls`: a JSON array of SessionInfo as ID STATUS TYPE AGE OWNER COMMAND.
Result<std::string> FormatSessionTable(std::string_view json_array, int64_t now_ms,
                                       size_t terminal_width);
// `show`: a SessionDetail as "Label: value" lines, then the last `tail_lines` lines of
// recentOutput.
Result<std::string> FormatSessionDetail(std::string_view json_object, int64_t now_ms,
                                        size_t tail_lines);
// `policies`: {"policies":[…]} as NAME TYPE BYPASSES-PROMPTS DESCRIPTION.
Result<std::string> FormatPolicyTable(std::string_view json_object, size_t terminal_width);

// The message for a failed request, without the "monkeyproof: " prefix:
// "<error> (<code>[, field <field>])" from the JSON error body, else "HTTP <status> <reason>"
// and the start of the body. A 401 adds where the token can come from and which source was
// used (`token_source`, empty when none); Retry-After is mentioned when present. With a
// `session` id, a not-found answer names it: "no session <id>: Not found (not_found); list
// the sessions with: monkeyproof ls".
std::string FormatHttpError(const HttpResponse& response, std::string_view token_source,
                            std::string_view session = {});

}  // namespace mp::cli

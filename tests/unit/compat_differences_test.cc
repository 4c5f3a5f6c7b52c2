// tests/compat/differences.json (the differences from the original MonkeyProof server that the
// compatibility test, tests/compat/compat.py, accepts) against docs/api.md: the list is well
// formed and each entry is a row of the "Differences from the original MonkeyProof" table, so
// that what the test tolerates is what the documentation tells clients. Reads only the two files.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mp {
namespace {

using nlohmann::json;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The table rows ("| ... |" lines) under the heading `title`, up to the next heading.
std::vector<std::string> TableRows(const std::string& markdown, const std::string& title) {
  std::vector<std::string> rows;
  std::istringstream in(markdown);
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("#", 0) == 0) {
      inside = line.find(title) != std::string::npos;
      continue;
    }
    if (inside && line.rfind("|", 0) == 0) rows.push_back(line);
  }
  return rows;
}

const json& Differences() {
  static const json* const doc =
      new json(json::parse(ReadText(MP_COMPAT_DIFFERENCES), nullptr, /*allow_exceptions=*/false));
  return *doc;
}

TEST(CompatDifferences, ListIsWellFormed) {
  const json& doc = Differences();
  ASSERT_FALSE(doc.is_discarded()) << MP_COMPAT_DIFFERENCES << " is not valid JSON";
  ASSERT_TRUE(doc.contains("differences") && doc["differences"].is_array())
      << MP_COMPAT_DIFFERENCES << " needs a \"differences\" array";
  std::set<std::pair<std::string, std::string>> seen;
  for (const json& e : doc["differences"]) {
    for (const char* member : {"flow", "path", "ours", "original", "reason"}) {
      ASSERT_TRUE(e.contains(member) && e[member].is_string() &&
                  !e[member].get<std::string>().empty())
          << "entry " << e.dump() << " needs a non-empty string \"" << member << "\"";
    }
    const std::string path = e["path"];
    EXPECT_TRUE(path[0] == '/' || path[0] == '*')
        << "entry " << e.dump() << ": path is /observation/member... (or a glob)";
    EXPECT_TRUE(seen.emplace(e["flow"], path).second) << "entry " << e.dump() << " is listed twice";
  }
}

TEST(CompatDifferences, EveryEntryIsARowOfTheDocsTable) {
  const std::string api_md = ReadText(MP_API_DOC);
  const auto rows = TableRows(api_md, "Differences from the original MonkeyProof");
  ASSERT_GT(rows.size(), 2U) << MP_API_DOC
                             << " has no table under a heading \"Differences from the original "
                                "MonkeyProof\"";
  for (const json& e : Differences()["differences"]) {
    const std::string flow = "`" + e["flow"].get<std::string>() + "`";
    const std::string path = "`" + e["path"].get<std::string>() + "`";
    bool found = false;
    for (const auto& row : rows) {
      found = found || (row.find(flow) != std::string::npos && row.find(path) != std::string::npos);
    }
    EXPECT_TRUE(found) << "tests/compat/differences.json lists flow " << flow << " path " << path
                       << " (" << e["reason"].get<std::string>()
                       << "), but no row of docs/api.md's \"Differences from the original "
                          "MonkeyProof\" table names both: add a row "
                          "| "
                       << flow << " | " << path << " | ours | original | why, what to do |";
  }
}

}  // namespace
}  // namespace mp

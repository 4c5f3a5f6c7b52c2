// Reading the packaged example configs (packaging/*.conf) in unit tests: every key is listed
// commented out as `# key = value` with its default. Test-only; any thread.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace mp::test {

struct UncommentedExample {
  std::set<std::string> keys;  // every key listed
  std::string text;            // the `key = value` lines, uncommented
};

// Reads `path`; fails the test on a missing file or on an active (uncommented) line.
inline UncommentedExample UncommentExample(const std::string& path) {
  UncommentedExample out;
  std::ifstream f(path);
  EXPECT_TRUE(f) << path;
  std::stringstream text;
  std::string line;
  while (std::getline(f, line)) {
    EXPECT_TRUE(line.empty() || line[0] == '#') << "an active line in the example: " << line;
    size_t eq = line.find(" = ");
    // "# key =": a key whose default is empty.
    if (eq == std::string::npos && line.size() > 4 && line.ends_with(" =")) eq = line.size() - 2;
    if (line.rfind("# ", 0) != 0 || eq == std::string::npos) continue;
    const std::string key = line.substr(2, eq - 2);
    if (key.find(' ') != std::string::npos) continue;  // prose containing " = "
    out.keys.insert(key);
    text << line.substr(2) << "\n";
  }
  out.text = text.str();
  return out;
}

}  // namespace mp::test

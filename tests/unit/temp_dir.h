// TempDir: a mkdtemp directory under /tmp for one unit test, removed with everything in it when
// the object goes. Test code only; one thread.
#pragma once

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

namespace mp::test {

class TempDir {
 public:
  // `prefix` names the test in the directory's name: /tmp/<prefix>-XXXXXX.
  explicit TempDir(const std::string& prefix) {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr) << tmpl;
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes `text` to `name` (replacing it) and returns its path; `mode` is applied with chmod
  // when given, else the file keeps what the umask leaves.
  std::string Write(const std::string& name, const std::string& text,
                    std::optional<mode_t> mode = std::nullopt) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::trunc) << text;
    if (mode) {
      EXPECT_EQ(::chmod(p.c_str(), *mode), 0) << p;
    }
    return p;
  }
  std::string Mkdir(const std::string& name, mode_t mode = 0755) const {
    const std::string p = path_ + "/" + name;
    EXPECT_EQ(::mkdir(p.c_str(), mode), 0) << p;
    return p;
  }

 private:
  std::string path_;
};

}  // namespace mp::test

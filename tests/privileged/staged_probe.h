// mp_probe, copied where a sandbox can see it. The build tree may live under
// /tmp (a clean clone in CI), which every sandbox covers with its own private
// /tmp, so tests run a copy under /opt, which the allowlisted view shows (read-only; in the VM it
// is the writable overlay).
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

namespace mp::testing {

inline const std::string& StagedProbe() {
  static const std::string path = [] {
    const std::string dir = "/opt/mp-probe-" + std::to_string(::getpid());
    const std::string copy = dir + "/mp_probe";
    ::mkdir(dir.c_str(), 0755);
    std::ifstream in(MP_PROBE_PATH, std::ios::binary);
    std::ofstream out(copy, std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
    out.close();
    if (!in || !out || ::chmod(copy.c_str(), 0755) != 0) {
      throw std::runtime_error("cannot stage " + std::string(MP_PROBE_PATH) + " at " + copy);
    }
    return copy;
  }();
  return path;
}

}  // namespace mp::testing

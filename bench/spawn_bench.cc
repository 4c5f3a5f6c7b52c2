// spawn_bench: spawn-to-exit latency of /bin/true under the MonkeyProof sandbox
// against bubblewrap, unshare(1) and a plain spawn, in one interleaved run.
// See bench/README.md; bench/run.sh runs it inside the test VM.
//
// Every external variant is started with posix_spawn() and reaped with wait4();
// the time is CLOCK_MONOTONIC from just before posix_spawn to just after wait4
// returns, so it covers the launcher's own process start (exec, dynamic
// linking), its sandbox setup, /bin/true and the launcher's teardown. The
// in-process variant ("ours-lib") calls the same library path the daemon will
// (Spawn, wait, FinishLeaf) with the seccomp filter compiled and the cgroup
// root opened once, as a long-lived supervisor does.
//
// Rounds: each round runs every variant once, in an order shuffled per round
// (fixed seed), so drift and "who ran just before" hit all variants alike.
// Warm-up rounds run first and are discarded.
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/cgroup.h"
#include "sandbox/seccomp.h"
#include "sandbox/spawn.h"

extern char** environ;

namespace {

constexpr char kDefaultCgroupRoot[] = "/sys/fs/cgroup/monkeyproof";

struct Sample {
  int round = 0;
  int64_t wall_ns = 0;
  int64_t cpu_us = 0;  // user + sys of the whole reaped tree
  int64_t minflt = 0;  // minor page faults of the whole reaped tree
};

struct Variant {
  std::string name;
  std::string what;               // one line for the table legend
  std::vector<std::string> argv;  // empty: the in-process variant
  std::vector<Sample> samples;
};

struct Options {
  int runs = 200;
  int warmup = 5;
  uint64_t seed = 1;
  std::string raw_path;
  std::string monkeyproofd;
  std::string cgroup_root = kDefaultCgroupRoot;
  std::string true_path = "/bin/true";
  std::vector<std::string> only;
  std::vector<std::pair<std::string, std::string>> extra;  // name, command line
  bool lib = true;
  bool outside_vm = false;
  int cpu = -1;  // pin the driver and every child to this CPU; -1: no pinning
};

[[noreturn]] void Die(const std::string& msg) {
  (void)std::fprintf(stderr, "spawn_bench: %s\n", msg.c_str());
  std::exit(1);
}

int64_t NowNs() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int64_t TvUs(const struct timeval& tv) {
  return static_cast<int64_t>(tv.tv_sec) * 1000000 + tv.tv_usec;
}

std::vector<std::string> SplitWords(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') {
      ++i;
    }
    size_t j = i;
    while (j < s.size() && s[j] != ' ') {
      ++j;
    }
    if (j > i) {
      out.emplace_back(s.substr(i, j - i));
    }
    i = j;
  }
  return out;
}

std::string FindInPath(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return name;
  }
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t pos = 0;
  while (pos <= p.size()) {
    size_t end = p.find(':', pos);
    if (end == std::string::npos) {
      end = p.size();
    }
    std::string cand = p.substr(pos, end - pos) + "/" + name;
    if (end > pos && ::access(cand.c_str(), X_OK) == 0) {
      return cand;
    }
    pos = end + 1;
  }
  return "";
}

// build/<preset>/bench/spawn_bench -> build/<preset>/src/supervisor/monkeyproofd
std::string DefaultMonkeyproofd() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) {
    return "";
  }
  std::string self(buf, static_cast<size_t>(n));
  const size_t slash = self.rfind('/');
  if (slash == std::string::npos) {
    return "";
  }
  return self.substr(0, slash) + "/../src/supervisor/monkeyproofd";
}

bool InTestVm() {
  const char* flag = std::getenv("MP_TEST_VM");
  if (flag == nullptr || std::strcmp(flag, "1") != 0) {
    return false;
  }
  if (::access("/run/mp-test-vm", F_OK) != 0) {
    return false;
  }
  struct statfs st {};
  return ::statfs("/sys/fs/cgroup", &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
}

void Usage(FILE* out) {
  (void)std::fprintf(out,
                     R"(usage: spawn_bench [options]

Measures spawn-to-exit of /bin/true: ours (monkeyproofd exec), ours-lib (the
same spawn path called in-process, as the daemon will), bwrap, unshare and a
plain spawn. Needs root on cgroup v2; refuses to run outside the test VM
(bench/run.sh starts it there) unless --outside-vm.

options:
  --runs N            measured rounds (default 200)
  --warmup N          discarded rounds first (default 5)
  --seed S            seed of the per-round order shuffle (default 1)
  --raw FILE          write every sample as CSV
  --monkeyproofd PATH (default: ../src/supervisor/monkeyproofd next to this binary)
  --cgroup-root PATH  for ours and ours-lib (default %s)
  --only A,B,...      run only these variants
  --extra NAME=CMD    add a variant: CMD split at spaces (repeatable), e.g.
                      --extra "ours-noseccomp=/path/monkeyproofd exec --no-seccomp -- /bin/true"
  --no-lib            leave out ours-lib
  --cpu N             pin this driver, and so every variant, to CPU N (see README:
                      under TCG one vCPU can be much slower than the other)
  --outside-vm        run although this is not the test VM (a dedicated machine:
                      ours creates cgroups under --cgroup-root)
)",
                     kDefaultCgroupRoot);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) {
      Die(std::string(argv[i]) + " needs a value");
    }
    return argv[++i];
  };
  auto to_int = [](const std::string& s, const char* flag) {
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 10);
    if (end == s.c_str() || *end != '\0' || v < 0) {
      Die(std::string(flag) + ": bad number " + s);
    }
    return static_cast<int>(v);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--runs") {
      o.runs = to_int(need(i), "--runs");
    } else if (a == "--warmup") {
      o.warmup = to_int(need(i), "--warmup");
    } else if (a == "--seed") {
      o.seed = static_cast<uint64_t>(to_int(need(i), "--seed"));
    } else if (a == "--raw") {
      o.raw_path = need(i);
    } else if (a == "--monkeyproofd") {
      o.monkeyproofd = need(i);
    } else if (a == "--cgroup-root") {
      o.cgroup_root = need(i);
    } else if (a == "--only") {
      std::string list = need(i);
      std::replace(list.begin(), list.end(), ',', ' ');
      o.only = SplitWords(list);
    } else if (a == "--extra") {
      const std::string v = need(i);
      const size_t eq = v.find('=');
      if (eq == 0 || eq == std::string::npos) {
        Die("--extra needs NAME=CMD");
      }
      o.extra.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (a == "--cpu") {
      o.cpu = to_int(need(i), "--cpu");
    } else if (a == "--no-lib") {
      o.lib = false;
    } else if (a == "--outside-vm") {
      o.outside_vm = true;
    } else if (a == "-h" || a == "--help") {
      Usage(stdout);
      std::exit(0);
    } else {
      Usage(stderr);
      Die("unknown option " + a);
    }
  }
  if (o.runs < 1) {
    Die("--runs must be at least 1");
  }
  if (o.monkeyproofd.empty()) {
    o.monkeyproofd = DefaultMonkeyproofd();
  }
  return o;
}

// One posix_spawn + wait4. stdin and stdout are /dev/null; stderr is ours,
// so a failing launcher says why.
Sample RunExternal(const Variant& v) {
  std::vector<char*> args;
  for (const auto& a : v.argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);

  Sample s;
  const int64_t t0 = NowNs();
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  if (rc != 0) {
    Die(v.name + ": posix_spawn(" + v.argv[0] + "): " + std::strerror(rc));
  }
  int status = 0;
  struct rusage ru {};
  pid_t w;
  do {
    w = ::wait4(pid, &status, 0, &ru);
  } while (w < 0 && errno == EINTR);
  const int64_t t1 = NowNs();
  posix_spawn_file_actions_destroy(&fa);
  if (w < 0) {
    Die(v.name + ": wait4: " + std::strerror(errno));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    Die(v.name + ": the command failed (wait status " + std::to_string(status) +
        "); a benchmark of a failing command means nothing");
  }
  s.wall_ns = t1 - t0;
  s.cpu_us = TvUs(ru.ru_utime) + TvUs(ru.ru_stime);
  s.minflt = ru.ru_minflt;
  return s;
}

// The daemon's path, in-process: what monkeyproofd exec does minus its own
// process start, option parsing, seccomp compilation and cgroup-root checks.
class InProcess {
 public:
  InProcess(const std::string& cgroup_root, const std::string& true_path) {
    if (::access(cgroup_root.c_str(), F_OK) != 0 && ::mkdir(cgroup_root.c_str(), 0755) != 0) {
      Die("mkdir " + cgroup_root + ": " + std::strerror(errno));
    }
    auto root = mp::sandbox::CgroupRoot::Open(cgroup_root);
    if (!root) {
      Die(root.error().ToString());
    }
    if (auto r = root->EnableControllers({"memory", "pids", "cpu"}); !r) {
      Die(r.error().ToString());
    }
    root_.emplace(std::move(*root));
    auto prog = mp::sandbox::CompileSeccomp(mp::sandbox::DefaultDenyProfile());
    if (!prog) {
      Die(prog.error().ToString());
    }
    program_.emplace(std::move(*prog));
    req_.argv = {true_path};
    req_.env = {"PATH=" + req_.search_path};
    req_.stdio = mp::sandbox::StdioMode::kInherit;
    req_.seccomp = program_->fprog();
  }

  Sample Run() {
    const std::string leaf = "bench-" + std::to_string(::getpid()) + "-" + std::to_string(seq_++);
    struct rusage c0 {
    }, s0{}, c1{}, s1{};
    ::getrusage(RUSAGE_CHILDREN, &c0);
    ::getrusage(RUSAGE_SELF, &s0);
    const int64_t t0 = NowNs();
    auto spawned = mp::sandbox::Spawn(*root_, leaf, req_);
    if (!spawned) {
      Die("ours-lib: " + spawned.error().ToString());
    }
    for (;;) {
      struct pollfd pfd = {spawned->init.fd(), POLLIN, 0};
      const int rc = ::poll(&pfd, 1, -1);
      if (rc > 0) {
        break;
      }
      if (rc < 0 && errno != EINTR) {
        Die(std::string("ours-lib: poll: ") + std::strerror(errno));
      }
    }
    auto report = mp::sandbox::ReadExitReport(*spawned);
    auto init_status = spawned->init.Wait();
    auto stats = mp::sandbox::FinishLeaf(spawned->leaf, std::chrono::seconds(10));
    const int64_t t1 = NowNs();
    ::getrusage(RUSAGE_CHILDREN, &c1);
    ::getrusage(RUSAGE_SELF, &s1);
    if (!stats) {
      Die("ours-lib: cleanup: " + stats.error().ToString());
    }
    if (!report || !report->has_value() || !(*report)->exited || (*report)->code != 0) {
      Die("ours-lib: /bin/true did not exit 0 in the sandbox");
    }
    Sample s;
    s.wall_ns = t1 - t0;
    s.cpu_us = TvUs(c1.ru_utime) + TvUs(c1.ru_stime) - TvUs(c0.ru_utime) - TvUs(c0.ru_stime) +
               TvUs(s1.ru_utime) + TvUs(s1.ru_stime) - TvUs(s0.ru_utime) - TvUs(s0.ru_stime);
    s.minflt = (c1.ru_minflt - c0.ru_minflt) + (s1.ru_minflt - s0.ru_minflt);
    return s;
  }

 private:
  std::optional<mp::sandbox::CgroupRoot> root_;
  std::optional<mp::sandbox::SeccompProgram> program_;
  mp::sandbox::SpawnRequest req_;
  uint64_t seq_ = 0;
};

// Linear interpolation between closest ranks (R's type 7).
double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  if (v.empty()) {
    return NAN;
  }
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

struct Summary {
  double median, p10, p90, mean, min, max, cpu_median, minflt_median;
};

Summary Summarise(const Variant& v) {
  std::vector<double> ms, cpu, flt;
  for (const auto& s : v.samples) {
    ms.push_back(static_cast<double>(s.wall_ns) / 1e6);
    cpu.push_back(static_cast<double>(s.cpu_us) / 1e3);
    flt.push_back(static_cast<double>(s.minflt));
  }
  Summary r{};
  r.median = Quantile(ms, 0.5);
  r.p10 = Quantile(ms, 0.1);
  r.p90 = Quantile(ms, 0.9);
  double sum = 0;
  for (double x : ms) {
    sum += x;
  }
  r.mean = sum / static_cast<double>(ms.size());
  r.min = *std::min_element(ms.begin(), ms.end());
  r.max = *std::max_element(ms.begin(), ms.end());
  r.cpu_median = Quantile(cpu, 0.5);
  r.minflt_median = Quantile(flt, 0.5);
  return r;
}

const Variant* Find(const std::vector<Variant>& vs, std::string_view name) {
  for (const auto& v : vs) {
    if (v.name == name) {
      return &v;
    }
  }
  return nullptr;
}

// Ratios of a to b: of the medians; the median of the per-round ratios (paired,
// robust to drift); and of the medians above the plain spawn ("overhead").
void PrintRatio(const std::vector<Variant>& vs, std::string_view a, std::string_view b) {
  const Variant* va = Find(vs, a);
  const Variant* vb = Find(vs, b);
  if (va == nullptr || vb == nullptr) {
    return;
  }
  const Summary sa = Summarise(*va), sb = Summarise(*vb);
  std::vector<double> paired;
  for (size_t i = 0; i < va->samples.size() && i < vb->samples.size(); ++i) {
    paired.push_back(static_cast<double>(va->samples[i].wall_ns) /
                     static_cast<double>(vb->samples[i].wall_ns));
  }
  const double ratio = sa.median / sb.median;
  const double paired_median = Quantile(paired, 0.5);
  double overhead = NAN;
  if (const Variant* base = Find(vs, "true")) {
    const double m = Summarise(*base).median;
    overhead = (sa.median - m) / (sb.median - m);
  }
  std::printf("%-14s / %-8s  %6.2fx  (paired per-round median %.2fx; above plain spawn %.2fx)\n",
              std::string(a).c_str(), std::string(b).c_str(), ratio, paired_median, overhead);
  std::printf(
      "BENCH_RATIO num=%s den=%s median_ratio=%.3f paired_median_ratio=%.3f "
      "overhead_ratio=%.3f\n",
      std::string(a).c_str(), std::string(b).c_str(), ratio, paired_median, overhead);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = ParseArgs(argc, argv);
  if (!o.outside_vm && !InTestVm()) {
    Die("refusing to run outside the test VM (ours writes cgroups as root); use bench/run.sh, "
        "or --outside-vm on a machine meant for it");
  }
  (void)::signal(SIGPIPE, SIG_IGN);
  if (o.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(o.cpu, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0) {
      Die("--cpu " + std::to_string(o.cpu) + ": " + std::strerror(errno));
    }
  }

  std::vector<Variant> all;
  const std::string bwrap = FindInPath("bwrap");
  const std::string unshare = FindInPath("unshare");
  all.push_back({"ours",
                 "monkeyproofd exec -- /bin/true (full sandbox, CLI)",
                 {o.monkeyproofd, "exec", "--cgroup-root", o.cgroup_root, "--", o.true_path},
                 {}});
  if (o.lib) {
    all.push_back({"ours-lib", "Spawn()+wait+FinishLeaf in-process (daemon path)", {}, {}});
  }
  if (!bwrap.empty()) {
    all.push_back({"bwrap",
                   "bwrap --unshare-all --new-session --die-with-parent --cap-drop ALL "
                   "--ro-bind / / --dev /dev --proc /proc /bin/true",
                   {bwrap, "--unshare-all", "--new-session", "--die-with-parent", "--cap-drop",
                    "ALL", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", o.true_path},
                   {}});
  }
  if (!unshare.empty()) {
    all.push_back({"unshare",
                   "unshare -p -m -n --fork /bin/true",
                   {unshare, "-p", "-m", "-n", "--fork", o.true_path},
                   {}});
  }
  all.push_back({"true", "posix_spawn(/bin/true), no sandbox", {o.true_path}, {}});
  for (const auto& [name, cmd] : o.extra) {
    all.push_back({name, cmd, SplitWords(cmd), {}});
  }

  std::vector<Variant> vs;
  for (auto& v : all) {
    if (o.only.empty() || std::find(o.only.begin(), o.only.end(), v.name) != o.only.end()) {
      vs.push_back(std::move(v));
    }
  }
  if (vs.empty()) {
    Die("no variant selected");
  }
  for (const auto& v : vs) {
    if (!v.argv.empty() && ::access(v.argv[0].c_str(), X_OK) != 0) {
      Die(v.name + ": " + v.argv[0] + " is not executable");
    }
  }
  std::unique_ptr<InProcess> inproc;
  if (Find(vs, "ours-lib") != nullptr) {
    inproc = std::make_unique<InProcess>(o.cgroup_root, o.true_path);
  }

  struct utsname un {};
  ::uname(&un);
  char date[64];
  const std::time_t now = std::time(nullptr);
  (void)std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  const std::string pinned = o.cpu >= 0 ? std::to_string(o.cpu) : "none";
  std::printf(
      "BENCH_ENV date=%s kernel=%s machine=%s cpus=%ld pinned_cpu=%s runs=%d warmup=%d "
      "seed=%llu\n",
      date, un.release, un.machine, ::sysconf(_SC_NPROCESSORS_ONLN), pinned.c_str(), o.runs,
      o.warmup, static_cast<unsigned long long>(o.seed));
  (void)std::fflush(stdout);

  std::mt19937_64 rng(o.seed);
  std::vector<size_t> order(vs.size());
  for (size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
  }
  const int64_t start = NowNs();
  for (int round = -o.warmup; round < o.runs; ++round) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t idx : order) {
      Variant& v = vs[idx];
      Sample s = v.argv.empty() ? inproc->Run() : RunExternal(v);
      s.round = round;
      if (round >= 0) {
        v.samples.push_back(s);
      }
    }
    if (round >= 0 && (round + 1) % 25 == 0) {
      (void)std::fprintf(stderr, "spawn_bench: %d/%d rounds, %.0f s\n", round + 1, o.runs,
                         static_cast<double>(NowNs() - start) / 1e9);
    }
  }
  const double elapsed = static_cast<double>(NowNs() - start) / 1e9;

  if (!o.raw_path.empty()) {
    FILE* f = std::fopen(o.raw_path.c_str(), "w");
    if (f == nullptr) {
      Die("open " + o.raw_path + ": " + std::strerror(errno));
    }
    (void)std::fprintf(f, "variant,round,wall_ns,cpu_us,minflt\n");
    for (const auto& v : vs) {
      for (const auto& s : v.samples) {
        (void)std::fprintf(f, "%s,%d,%lld,%lld,%lld\n", v.name.c_str(), s.round,
                           static_cast<long long>(s.wall_ns), static_cast<long long>(s.cpu_us),
                           static_cast<long long>(s.minflt));
      }
    }
    if (std::fclose(f) != 0) {
      Die("write " + o.raw_path + ": " + std::strerror(errno));
    }
  }

  std::printf("\nspawn-to-exit of /bin/true, %d rounds (+%d warm-up), %.0f s, times in ms\n\n",
              o.runs, o.warmup, elapsed);
  std::printf("%-14s %5s %9s %9s %9s %9s %9s %9s %9s %8s\n", "variant", "n", "median", "p10", "p90",
              "mean", "min", "max", "cpu-med", "minflt");
  for (const auto& v : vs) {
    const Summary s = Summarise(v);
    std::printf("%-14s %5zu %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %8.0f\n", v.name.c_str(),
                v.samples.size(), s.median, s.p10, s.p90, s.mean, s.min, s.max, s.cpu_median,
                s.minflt_median);
  }
  std::printf("\n");
  for (const auto& v : vs) {
    std::printf("  %-12s %s\n", v.name.c_str(), v.what.c_str());
  }
  std::printf("\n");
  for (const auto& v : vs) {
    const Summary s = Summarise(v);
    std::printf(
        "BENCH variant=%s n=%zu median_ms=%.3f p10_ms=%.3f p90_ms=%.3f mean_ms=%.3f "
        "min_ms=%.3f max_ms=%.3f cpu_median_ms=%.3f minflt_median=%.0f\n",
        v.name.c_str(), v.samples.size(), s.median, s.p10, s.p90, s.mean, s.min, s.max,
        s.cpu_median, s.minflt_median);
  }
  std::printf("\n");
  for (const char* num : {"ours", "ours-lib"}) {
    for (const char* den : {"bwrap", "unshare"}) {
      PrintRatio(vs, num, den);
    }
  }
  for (const auto& [name, cmd] : o.extra) {
    (void)cmd;
    PrintRatio(vs, name, "ours");
    PrintRatio(vs, name, "bwrap");
  }
  return 0;
}

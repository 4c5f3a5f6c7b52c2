// token_store_bench: what one scoped-token mint costs the API's io_context thread at N records
// (default 2000), before and after the TokenWriter (http/token_writer.h), in a directory of
// the caller's choice (any user; fsync is what is measured, so not a tmpfs):
//   before-io-thread  the whole file serialised, written, fsynced and renamed on that thread
//                     (what TokenStore::Mint did there per mint until the writer);
//   after-io-thread   PrepareMint + Commit: the checks and the file's text from the kept record
//                     lines; the write runs on the writer's thread;
//   after-total       PrepareMint, the write with fsync, Commit: the mint's own latency now.
// Usage: token_store_bench [--records N] [--samples S] [--dir DIR]. Prints one
// `BENCH variant=... records=... median_ms=... p10_ms=... p90_ms=...` line per variant.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "http/scoped_tokens.h"

namespace {

using Clock = std::chrono::steady_clock;
using mp::http::TokenStore;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

void Report(const char* variant, size_t records, std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    return ms[static_cast<size_t>(q * static_cast<double>(ms.size() - 1))];
  };
  std::printf("BENCH variant=%s records=%zu samples=%zu median_ms=%.3f p10_ms=%.3f p90_ms=%.3f\n",
              variant, records, ms.size(), at(0.5), at(0.1), at(0.9));
}

mp::http::TokenScope Scope() {
  mp::http::TokenScope s;
  s.sessions = {mp::http::SessionScope::Kind::kOwner, "alice"};
  s.rights = static_cast<mp::http::Rights>(mp::http::Right::kRead) |
             static_cast<mp::http::Rights>(mp::http::Right::kInput);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  size_t records = 2000;
  size_t samples = 40;
  std::string dir = ".";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--records") == 0) records = std::stoul(argv[i + 1]);
    if (std::strcmp(argv[i], "--samples") == 0) samples = std::stoul(argv[i + 1]);
    if (std::strcmp(argv[i], "--dir") == 0) dir = argv[i + 1];
  }
  std::string tmpl = dir + "/token-bench.XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror(("mkdtemp " + tmpl).c_str());
    return 1;
  }
  const std::string path = tmpl + "/tokens.json";
  const uint64_t now = 1'800'000'000'000;
  const size_t max_live = records + 4 * samples + 16;
  auto opened = TokenStore::Open({path, 86400, max_live});
  if (!opened) {
    std::fprintf(stderr, "%s\n", opened.error().ToString().c_str());
    return 1;
  }
  TokenStore store = std::move(*opened);
  // The records, written once at the end rather than fsynced one by one.
  const TokenStore::WriteFn real = store.write_function();
  store.set_write_function([](const std::string&, const std::string&) { return mp::Ok(); });
  const mp::http::TokenScope scope = Scope();
  for (size_t i = 0; i < records; ++i) {
    if (!store.Mint(scope, 3600, "admin", now)) return 1;
  }
  store.set_write_function(real);
  auto first = store.PrepareMint(scope, 3600, "admin", now);
  if (!first || !TokenStore::WriteFileAtomically(path, first->text)) return 1;
  store.Commit(std::move(*first));
  std::map<std::string, mp::http::TokenRecord> old_records;
  for (const auto& r : store.List(now)) old_records.emplace(r.id, r);

  std::vector<double> before, after_io, after_total;
  for (size_t i = 0; i < samples; ++i) {
    // Before: the new record into the map, then the whole file from it, on the io thread.
    auto change = store.PrepareMint(scope, 3600, "admin", now);
    if (!change) return 1;
    auto t0 = Clock::now();
    old_records.emplace(change->record.id, change->record);
    const std::string text = TokenStore::Serialize(old_records);
    if (!TokenStore::WriteFileAtomically(path, text)) return 1;
    before.push_back(Ms(Clock::now() - t0));
    store.Commit(std::move(*change));

    // After: what the io thread does; the write is the writer thread's.
    t0 = Clock::now();
    auto prepared = store.PrepareMint(scope, 3600, "admin", now);
    if (!prepared) return 1;
    const auto t1 = Clock::now();
    if (!TokenStore::WriteFileAtomically(path, prepared->text)) return 1;
    const auto t2 = Clock::now();
    const mp::http::TokenRecord record = prepared->record;
    store.Commit(std::move(*prepared));
    const auto t3 = Clock::now();
    old_records.emplace(record.id, record);
    after_io.push_back(Ms((t1 - t0) + (t3 - t2)));
    after_total.push_back(Ms(t3 - t0));
  }
  Report("before-io-thread", records, before);
  Report("after-io-thread", records, after_io);
  Report("after-total", records, after_total);
  ::unlink(path.c_str());
  ::unlink((path + ".tmp").c_str());
  ::rmdir(tmpl.c_str());
  return 0;
}

// stream_client: the native reader of bench/compare.sh, so that the client is not what bounds a
// server's streaming rate (bench/README.md, "compare").
//   pipe         read stdin to EOF in 64 KiB blocks, sha256 it: the raw pipe rate
//   stream       POST /sessions {"task": TASK}, open ONE WebSocket to the session
//                (?since=0&token=T: the original's way, which ours accepts too), sha256 the
//                `data` of every stdout message (and of a non-empty `catchup`, which is how
//                the original hands over output read before the client joined) until the
//                server closes; messages with an `offset` (ours) are de-duplicated by it
//   posts        N threads POST /sessions {"task": TASK} at once, one connection each: the
//                latency of each answer and the session ids (compare.py then reads when each
//                session ended from the server, so the client's speed does not enter that time)
//   spawn-true   posix_spawn("/bin/true") and wait, N times: the floor of every spawn
// Works against the original MonkeyProof server and ours alike. Prints one line
// `BENCH_JSON {...}` on stdout; errors go to stderr with status 1.
// Usage: stream_client pipe
//        stream_client stream --url http://HOST:PORT --token T --task TASK [--expect BYTES]
//        stream_client posts --url http://HOST:PORT --token T --task TASK --count N
//        stream_client spawn-true --count N
#include <openssl/evp.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double CpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) {
      throw std::runtime_error("EVP_DigestInit_ex(sha256) failed");
    }
  }
  void Update(std::string_view b) { EVP_DigestUpdate(ctx_.get(), b.data(), b.size()); }
  std::string Hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_.get(), md, &n);
    std::string out;
    char two[3];
    for (unsigned int i = 0; i < n; ++i) {
      std::snprintf(two, sizeof two, "%02x", md[i]);
      out += two;
    }
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

void Emit(const Json& j) { std::printf("BENCH_JSON %s\n", j.dump().c_str()); }

// ------------------------------------------------------------------ a flat JSON message

// The members of one server message that the reader needs, found without building a tree: a
// top-level scan that decodes only the `data` string. Nested values are skipped.
struct Message {
  std::string type;
  std::string data;
  std::string status;
  int64_t offset = -1;
  int64_t next = -1;
  int64_t code = -1;
  bool has_code = false;
};

class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}

  Message Parse() {
    Message m;
    Ws();
    Expect('{');
    Ws();
    if (Peek() == '}') return m;
    for (;;) {
      Ws();
      std::string key;
      String(&key);
      Ws();
      Expect(':');
      Ws();
      if (key == "type") {
        String(&m.type);
      } else if (key == "data") {
        if (Peek() == '"')
          String(&m.data);
        else
          Skip();
      } else if (key == "status") {
        if (Peek() == '"')
          String(&m.status);
        else
          Skip();
      } else if (key == "offset") {
        m.offset = Integer();
      } else if (key == "next") {
        m.next = Integer();
      } else if (key == "code") {
        if (Peek() == 'n')
          Skip();
        else {
          m.code = Integer();
          m.has_code = true;
        }
      } else {
        Skip();
      }
      Ws();
      if (Peek() == ',') {
        ++i_;
        continue;
      }
      Expect('}');
      return m;
    }
  }

 private:
  char Peek() const {
    if (i_ >= s_.size()) throw std::runtime_error("message ends early");
    return s_[i_];
  }
  void Expect(char c) {
    if (Peek() != c) throw std::runtime_error(std::string("message: expected '") + c + "'");
    ++i_;
  }
  void Ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
      ++i_;
  }
  int64_t Integer() {
    size_t start = i_;
    if (Peek() == '-') ++i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    if (i_ < s_.size() && (s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E')) {
      Skip();  // not an integer: not one of the members read here
      return -1;
    }
    return std::stoll(std::string(s_.substr(start, i_ - start)));
  }
  static void Utf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  uint32_t Hex4() {
    if (i_ + 4 > s_.size()) throw std::runtime_error("message: short \\u escape");
    uint32_t v = static_cast<uint32_t>(std::stoul(std::string(s_.substr(i_, 4)), nullptr, 16));
    i_ += 4;
    return v;
  }
  // A JSON string into *out (decoded), plain runs copied in one piece.
  void String(std::string* out) {
    Expect('"');
    out->clear();
    for (;;) {
      size_t j = i_;
      while (j < s_.size() && s_[j] != '"' && s_[j] != '\\') ++j;
      out->append(s_.data() + i_, j - i_);
      i_ = j;
      char c = Peek();
      ++i_;
      if (c == '"') return;
      char e = Peek();
      ++i_;
      switch (e) {
        case 'n':
          out->push_back('\n');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'u': {
          uint32_t cp = Hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && i_ + 6 <= s_.size() && s_[i_] == '\\' &&
              s_[i_ + 1] == 'u') {
            i_ += 2;
            uint32_t lo = Hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          Utf8(cp, out);
          break;
        }
        default:
          out->push_back(e);  // " \ /
      }
    }
  }
  void Skip() {  // any value
    char c = Peek();
    if (c == '"') {
      std::string ignored;
      String(&ignored);
    } else if (c == '{' || c == '[') {
      int depth = 0;
      do {
        c = Peek();
        if (c == '"') {
          std::string ignored;
          String(&ignored);
          continue;
        }
        if (c == '{' || c == '[') ++depth;
        if (c == '}' || c == ']') --depth;
        ++i_;
      } while (depth > 0);
    } else {
      while (i_ < s_.size() && s_[i_] != ',' && s_[i_] != '}' && s_[i_] != ']') ++i_;
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

// ------------------------------------------------------------------------------ modes

int Pipe() {
  Sha256 sha;
  std::vector<char> buf(64 * 1024);
  uint64_t bytes = 0;
  Clock::time_point first{};
  double cpu0 = 0;
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error(std::string("read(stdin): ") + std::strerror(errno));
    if (n == 0) break;
    if (bytes == 0) {
      first = Clock::now();
      cpu0 = CpuSeconds();
    }
    sha.Update({buf.data(), static_cast<size_t>(n)});
    bytes += static_cast<uint64_t>(n);
  }
  const double secs = bytes ? Since(first) : 0;
  Emit({{"kind", "pipe"},
        {"client", "native"},
        {"bytes", bytes},
        {"sha256", sha.Hex()},
        {"seconds", secs},
        {"mib_s", secs > 0 ? bytes / secs / 1048576.0 : 0.0},
        {"client_cpu_s", bytes ? CpuSeconds() - cpu0 : 0.0}});
  return 0;
}

struct Url {
  std::string host, port;
};

Url ParseUrl(const std::string& url) {
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) throw std::runtime_error("--url must start with http://: " + url);
  std::string rest = url.substr(prefix.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return {rest, "80"};
  return {rest.substr(0, colon), rest.substr(colon + 1)};
}

// POST /sessions {"task": TASK} on a new connection (Connection: close); the session's id.
std::string Post(asio::io_context& ioc, const tcp::resolver::results_type& endpoints,
                 const Url& url, const std::string& token, const std::string& task) {
  tcp::socket sock(ioc);
  asio::connect(sock, endpoints);
  http::request<http::string_body> req{http::verb::post, "/sessions", 11};
  req.set(http::field::host, url.host + ":" + url.port);
  req.set(http::field::authorization, "Bearer " + token);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::connection, "close");
  req.body() = Json{{"task", task}, {"owner", "bench"}}.dump();
  req.prepare_payload();
  http::write(sock, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(sock, buf, res);
  if (res.result_int() != 201) {
    throw std::runtime_error("POST /sessions: " + std::to_string(res.result_int()) + " " +
                             res.body().substr(0, 300));
  }
  return Json::parse(res.body()).at("id").get<std::string>();
}

// COUNT threads, released together, each POSTs once on its own connection.
int Posts(const std::map<std::string, std::string>& opt) {
  const Url url = ParseUrl(opt.at("url"));
  const int count = std::stoi(opt.at("count"));
  asio::io_context ioc;
  const auto endpoints = tcp::resolver(ioc).resolve(url.host, url.port);
  std::vector<double> ms(count, -1);
  std::vector<std::string> ids(count), errors(count);
  std::mutex mu;
  std::condition_variable cv;
  bool go = false;
  std::vector<std::thread> threads;
  threads.reserve(count);
  for (int i = 0; i < count; ++i) {
    threads.emplace_back([&, i] {
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return go; });
      }
      const auto t0 = Clock::now();
      try {
        asio::io_context own;
        ids[i] = Post(own, endpoints, url, opt.at("token"), opt.at("task"));
        ms[i] = Since(t0) * 1000.0;
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  const double t0_wall =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  {
    std::lock_guard<std::mutex> lock(mu);
    go = true;
  }
  cv.notify_all();
  for (auto& t : threads) t.join();
  Json out{{"kind", "posts"}, {"count", count}, {"t0_wall", t0_wall}};
  Json lat = Json::array(), got = Json::array(), errs = Json::array();
  for (int i = 0; i < count; ++i) {
    if (!errors[i].empty()) {
      errs.push_back(errors[i]);
      continue;
    }
    lat.push_back(ms[i]);
    got.push_back(ids[i]);
  }
  out["post_ms"] = lat;
  out["ids"] = got;
  out["errors"] = errs;
  Emit(out);
  return 0;
}

int Stream(const std::map<std::string, std::string>& opt) {
  const Url url = ParseUrl(opt.at("url"));
  const std::string token = opt.at("token");
  const int64_t expect = opt.count("expect") ? std::stoll(opt.at("expect")) : -1;
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  const auto endpoints = resolver.resolve(url.host, url.port);

  // POST /sessions on its own connection (Connection: close, as a one-shot client does).
  const auto t_post = Clock::now();
  const std::string id = Post(ioc, endpoints, url, token, opt.at("task"));
  const double post_ms = Since(t_post) * 1000.0;

  websocket::stream<tcp::socket> ws(ioc);
  asio::connect(ws.next_layer(), endpoints);
  const timeval tv{600, 0};  // a server that stops sending ends the run instead of hanging it
  ::setsockopt(ws.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ws.read_message_max(64u << 20);
  ws.handshake(url.host + ":" + url.port, "/sessions/" + id + "/ws?since=0&token=" + token);

  Sha256 sha;
  uint64_t bytes = 0, messages = 0, duplicate = 0, holes = 0, wire = 0;
  int64_t expected = 0;  // next output offset (messages that carry one)
  int64_t exit_code = -1;
  bool exited = false;
  Clock::time_point first{}, last{};
  double cpu0 = 0;
  beast::flat_buffer buf;
  auto take = [&](std::string_view data) {
    if (data.empty()) return;
    if (bytes == 0) {
      first = Clock::now();
      cpu0 = CpuSeconds();
    }
    sha.Update(data);
    bytes += data.size();
    last = Clock::now();
  };
  for (;;) {
    beast::error_code ec;
    ws.read(buf, ec);
    if (ec == websocket::error::closed || ec == asio::error::eof ||
        ec == asio::error::connection_reset) {
      break;
    }
    if (ec) throw beast::system_error(ec, "WebSocket read");
    const std::string_view text(static_cast<const char*>(buf.data().data()), buf.size());
    wire += text.size();
    Message m = Scanner(text).Parse();
    buf.consume(buf.size());
    ++messages;
    if (m.type == "stdout") {
      std::string_view data = m.data;
      if (m.offset >= 0) {
        if (m.offset > expected) ++holes;
        if (m.offset < expected) {
          const auto skip =
              static_cast<size_t>(std::min<int64_t>(expected - m.offset, data.size()));
          duplicate += skip;
          data.remove_prefix(skip);
        }
        expected = std::max(expected, m.next);
      }
      take(data);
    } else if (m.type == "catchup") {
      if (m.next >= 0) expected = m.next;
      if (m.offset < 0) take(m.data);  // the original: output read before this client joined
      if (m.status == "exited") exited = true;
    } else if (m.type == "gap") {
      ++holes;
    } else if (m.type == "exit") {
      exited = true;
      exit_code = m.has_code ? m.code : -1;
      // Ours closes once every byte before `exit` is sent; the original closes a second later
      // and may still deliver output read after the exit: read on until it closes, or stop
      // here once everything expected has come.
      if (expect >= 0 && static_cast<int64_t>(bytes) >= expect) break;
    }
  }
  beast::error_code ignored;
  ws.next_layer().close(ignored);
  const double secs = bytes ? std::chrono::duration<double>(last - first).count() : 0;
  Json out{{"kind", "stream"},
           {"client", "native"},
           {"session", id},
           {"bytes", bytes},
           {"sha256", sha.Hex()},
           {"seconds", secs},
           {"mib_s", secs > 0 ? bytes / secs / 1048576.0 : 0.0},
           {"client_cpu_s", bytes ? CpuSeconds() - cpu0 : 0.0},
           {"messages", messages},
           {"wire_bytes", wire},
           {"duplicate_bytes", duplicate},
           {"holes", holes},
           {"exited", exited},
           {"exit_code", exit_code},
           {"post_ms", post_ms},
           {"seconds_total", Since(t_post)}};
  if (expect >= 0 && static_cast<int64_t>(bytes) != expect) {
    out["error"] = "got " + std::to_string(bytes) + " bytes, expected " + std::to_string(expect);
  }
  Emit(out);
  return 0;  // a short stream is a result (the table shows it), not a client failure
}

int SpawnTrue(int count) {
  std::vector<double> ms;
  char arg0[] = "/bin/true";
  char* argv[] = {arg0, nullptr};
  for (int i = 0; i < count; ++i) {
    const auto t0 = Clock::now();
    pid_t pid = 0;
    if (int rc = ::posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ); rc != 0) {
      throw std::runtime_error(std::string("posix_spawn(/bin/true): ") + std::strerror(rc));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ms.push_back(Since(t0) * 1000.0);
  }
  std::sort(ms.begin(), ms.end());
  Emit({{"kind", "spawn-true"},
        {"count", count},
        {"median_ms", ms.empty() ? 0.0 : ms[ms.size() / 2]},
        {"min_ms", ms.empty() ? 0.0 : ms.front()}});
  return 0;
}

int Usage() {
  std::fprintf(stderr,
               "usage: stream_client pipe\n"
               "       stream_client stream --url http://HOST:PORT --token T --task TASK "
               "[--expect BYTES]\n"
               "       stream_client posts --url http://HOST:PORT --token T --task TASK "
               "--count N\n"
               "       stream_client spawn-true --count N\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  const std::string mode = argv[1];
  std::map<std::string, std::string> opt;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) return Usage();
    opt[k.substr(2)] = argv[i + 1];
  }
  try {
    if (mode == "pipe") return Pipe();
    if (mode == "stream") {
      for (const char* k : {"url", "token", "task"}) {
        if (!opt.count(k)) {
          std::fprintf(stderr, "stream_client stream: --%s is required\n", k);
          return Usage();
        }
      }
      return Stream(opt);
    }
    if (mode == "posts") {
      for (const char* k : {"url", "token", "task", "count"}) {
        if (!opt.count(k)) {
          std::fprintf(stderr, "stream_client posts: --%s is required\n", k);
          return Usage();
        }
      }
      return Posts(opt);
    }
    if (mode == "spawn-true")
      return SpawnTrue(opt.count("count") ? std::stoi(opt.at("count")) : 100);
    return Usage();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stream_client %s: %s\n", mode.c_str(), e.what());
    return 1;
  }
}

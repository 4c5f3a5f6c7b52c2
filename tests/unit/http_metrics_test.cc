// Metrics of monkeyproof-api: the Prometheus text format 0.0.4 that Render produces (parsed
// line by line: every sample's family has # HELP and # TYPE before it, names and values are
// well formed), the counters and gauges moving as events are counted, responses by status
// class, the supervisor gauges, and counting from several threads. Runs as any user.
#include "http/metrics.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace mp::http {
namespace {

struct Family {
  std::string help;
  std::string type;
};

struct Parsed {
  std::map<std::string, Family> families;
  std::map<std::string, double> samples;  // "name" or "name{labels}" -> value
  std::vector<std::string> order;         // family names as they appear
};

bool ValidName(const std::string& n) {
  if (n.empty() || !(std::isalpha(static_cast<unsigned char>(n[0])) || n[0] == '_')) return false;
  for (char c : n) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':')) return false;
  }
  return true;
}

// A strict reader of the subset of the format Render may use. Failures are reported with the
// offending line.
void ParseInto(const std::string& text, Parsed* out) {
  Parsed& p = *out;
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n') << "the exposition ends with a newline";
  std::istringstream in(text);
  std::string line;
  std::string current;  // the family whose HELP/TYPE came last
  while (std::getline(in, line)) {
    SCOPED_TRACE(line);
    EXPECT_FALSE(line.empty()) << "no blank lines";
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string rest = line.substr(7);
      const size_t sp = rest.find(' ');
      ASSERT_NE(sp, std::string::npos);
      current = rest.substr(0, sp);
      EXPECT_TRUE(ValidName(current));
      EXPECT_EQ(p.families.count(current), 0u) << "family repeated: " << current;
      p.families[current].help = rest.substr(sp + 1);
      EXPECT_FALSE(p.families[current].help.empty());
      p.order.push_back(current);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::string rest = line.substr(7);
      const size_t sp = rest.find(' ');
      ASSERT_NE(sp, std::string::npos);
      EXPECT_EQ(rest.substr(0, sp), current) << "TYPE follows the HELP of the same family";
      p.families[current].type = rest.substr(sp + 1);
      continue;
    }
    ASSERT_NE(line[0], '#') << "unexpected comment";
    const size_t sp = line.rfind(' ');
    ASSERT_NE(sp, std::string::npos);
    const std::string key = line.substr(0, sp);
    const std::string value = line.substr(sp + 1);
    const std::string name = key.substr(0, key.find('{'));
    EXPECT_TRUE(ValidName(name));
    EXPECT_EQ(name, current) << "a sample belongs to the family declared just before it";
    if (key.find('{') != std::string::npos) {
      EXPECT_EQ(key.back(), '}');
      const std::string labels = key.substr(name.size() + 1, key.size() - name.size() - 2);
      const size_t eq = labels.find('=');
      ASSERT_NE(eq, std::string::npos);
      EXPECT_TRUE(ValidName(labels.substr(0, eq)));
      EXPECT_EQ(labels[eq + 1], '"');
      EXPECT_EQ(labels.back(), '"');
    }
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    EXPECT_TRUE(!value.empty() && *end == '\0') << "not a number: " << value;
    EXPECT_EQ(p.samples.count(key), 0u) << "sample repeated";
    p.samples[key] = v;
  }
}

Parsed Parse(const std::string& text) {
  Parsed p;
  ParseInto(text, &p);
  return p;
}

TEST(MetricsTest, FormatIsWellFormed) {
  Metrics m;
  const Parsed p = Parse(m.Render({}));
  for (const auto& [name, family] : p.families) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(family.type == "counter" || family.type == "gauge") << family.type;
    if (name.rfind("monkeyproof_api_", 0) == 0 && family.type == "counter") {
      EXPECT_EQ(name.substr(name.size() - 6), "_total");
    }
    if (family.type == "counter") {
      EXPECT_EQ(name.rfind("monkeyproof_api_", 0), 0u) << "counters are the API's";
    }
    bool has_sample = false;
    for (const auto& [key, v] : p.samples) {
      if (key.substr(0, key.find('{')) == name) has_sample = true;
    }
    EXPECT_TRUE(has_sample);
  }
  // Every sample has its family declared (checked in Parse by order), and all are present.
  for (const char* name :
       {"monkeyproof_api_http_responses_total", "monkeyproof_api_auth_failures_total",
        "monkeyproof_api_rate_limited_total", "monkeyproof_api_sessions_created_total",
        "monkeyproof_api_tls_handshake_failures_total", "monkeyproof_api_ws_bytes_sent_total",
        "monkeyproof_api_preauth_evictions_total", "monkeyproof_api_ws_lagged_total",
        "monkeyproof_api_supervisor_reconnects_total", "monkeyproof_api_connections",
        "monkeyproof_api_ws_clients", "monkeyproof_supervisor_up", "monkeyproof_sessions_active",
        "monkeyproof_sessions_total", "monkeyproof_sessions_max"}) {
    EXPECT_EQ(p.families.count(name), 1u) << name;
  }
  EXPECT_EQ(p.families.at("monkeyproof_supervisor_up").type, "gauge");
  EXPECT_EQ(p.families.at("monkeyproof_sessions_total").type, "gauge");
  EXPECT_EQ(p.families.at("monkeyproof_api_connections").type, "gauge");
}

TEST(MetricsTest, StartsAtZero) {
  Metrics m;
  const Parsed p = Parse(m.Render({}));
  for (const auto& [key, v] : p.samples) {
    if (key == "process_resident_memory_bytes") continue;
    EXPECT_EQ(v, 0) << key;
  }
  for (const char* cls : {"1xx", "2xx", "3xx", "4xx", "5xx"}) {
    const std::string key =
        std::string("monkeyproof_api_http_responses_total{code=\"") + cls + "\"}";
    EXPECT_EQ(p.samples.count(key), 1u) << key;
  }
}

TEST(MetricsTest, ResponsesByStatusClass) {
  Metrics m;
  for (int s : {101, 200, 201, 204, 304, 400, 401, 404, 429, 500, 503, 599}) m.CountResponse(s);
  // Not HTTP statuses: counted nowhere visible.
  for (int s : {0, 99, 600, 1000, -200}) m.CountResponse(s);
  const Parsed p = Parse(m.Render({}));
  const auto at = [&](const char* cls) {
    return p.samples.at(std::string("monkeyproof_api_http_responses_total{code=\"") + cls + "\"}");
  };
  EXPECT_EQ(at("1xx"), 1);
  EXPECT_EQ(at("2xx"), 3);
  EXPECT_EQ(at("3xx"), 1);
  EXPECT_EQ(at("4xx"), 4);
  EXPECT_EQ(at("5xx"), 3);
}

TEST(MetricsTest, CountersAndGaugesMove) {
  Metrics m;
  m.CountAuthFailure();
  m.CountAuthFailure();
  m.CountRateLimited();
  for (int i = 0; i < 3; ++i) m.CountSessionCreated();
  m.AddWsBytes(1000);
  m.AddWsBytes(24);
  m.CountWsLagged();
  m.CountSupervisorReconnect();
  m.CountSupervisorReconnect();
  for (int i = 0; i < 5; ++i) m.ConnectionOpened();
  m.ConnectionClosed();
  m.WsOpened();
  m.WsOpened();
  m.WsClosed();
  const Parsed p = Parse(m.Render({}));
  EXPECT_EQ(p.samples.at("monkeyproof_api_auth_failures_total"), 2);
  EXPECT_EQ(p.samples.at("monkeyproof_api_rate_limited_total"), 1);
  EXPECT_EQ(p.samples.at("monkeyproof_api_sessions_created_total"), 3);
  EXPECT_EQ(p.samples.at("monkeyproof_api_ws_bytes_sent_total"), 1024);
  EXPECT_EQ(p.samples.at("monkeyproof_api_ws_lagged_total"), 1);
  EXPECT_EQ(p.samples.at("monkeyproof_api_supervisor_reconnects_total"), 2);
  EXPECT_EQ(p.samples.at("monkeyproof_api_connections"), 4);
  EXPECT_EQ(p.samples.at("monkeyproof_api_ws_clients"), 1);
}

TEST(MetricsTest, LargeCounterValuesAreExact) {
  Metrics m;
  m.AddWsBytes(uint64_t{1} << 53);
  m.AddWsBytes(3);
  const std::string text = m.Render({});
  EXPECT_NE(text.find("\nmonkeyproof_api_ws_bytes_sent_total 9007199254740995\n"),
            std::string::npos);
}

TEST(MetricsTest, SupervisorGauges) {
  Metrics m;
  Parsed p = Parse(m.Render({.connected = false}));
  EXPECT_EQ(p.samples.at("monkeyproof_supervisor_up"), 0);
  p = Parse(m.Render(
      {.connected = true, .sessions_active = 7, .sessions_total = 12, .max_sessions = 50}));
  EXPECT_EQ(p.samples.at("monkeyproof_supervisor_up"), 1);
  EXPECT_EQ(p.samples.at("monkeyproof_sessions_active"), 7);
  EXPECT_EQ(p.samples.at("monkeyproof_sessions_total"), 12);
  EXPECT_EQ(p.samples.at("monkeyproof_sessions_max"), 50);
  EXPECT_EQ(p.samples.at("monkeyproof_sessions_readopted"), 0);
  p = Parse(m.Render({.connected = true, .sessions_readopted = 4, .readoption_failures = 1}));
  EXPECT_EQ(p.samples.at("monkeyproof_sessions_readopted"), 4);
  EXPECT_EQ(p.samples.at("monkeyproof_session_readoption_failures"), 1);
}

TEST(MetricsTest, ResidentMemory) {
  Metrics m;
  const Parsed p = Parse(m.Render({}));
  // /proc is mounted wherever the unit tests run.
  ASSERT_EQ(p.samples.count("process_resident_memory_bytes"), 1u);
  EXPECT_EQ(p.families.at("process_resident_memory_bytes").type, "gauge");
  EXPECT_GT(p.samples.at("process_resident_memory_bytes"), 4096);
}

TEST(MetricsTest, NoSessionLabels) {
  Metrics m;
  m.CountSessionCreated();
  const Parsed p = Parse(m.Render({.connected = true, .sessions_active = 1}));
  std::set<std::string> labelled;
  for (const auto& [key, v] : p.samples) {
    if (key.find('{') != std::string::npos) labelled.insert(key.substr(0, key.find('{')));
  }
  EXPECT_EQ(labelled, (std::set<std::string>{"monkeyproof_api_http_responses_total"}));
}

TEST(MetricsTest, CountingFromManyThreads) {
  Metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 10'000; ++i) {
        m.CountResponse(200);
        m.AddWsBytes(2);
        m.ConnectionOpened();
        m.ConnectionClosed();
      }
    });
  }
  for (int i = 0; i < 100; ++i) (void)m.Render({});  // a scrape during the counting
  for (auto& th : threads) th.join();
  const Parsed p = Parse(m.Render({}));
  EXPECT_EQ(p.samples.at("monkeyproof_api_http_responses_total{code=\"2xx\"}"), 40'000);
  EXPECT_EQ(p.samples.at("monkeyproof_api_ws_bytes_sent_total"), 80'000);
  EXPECT_EQ(p.samples.at("monkeyproof_api_connections"), 0);
}

// The supervisor's egress totals (protocol version 5): totals by verdict and direction, no
// per-session label; absent from an older supervisor's answer, so absent here.
TEST(MetricsTest, EgressTotalsWithoutPerSessionLabels) {
  Metrics m;
  Parsed p = Parse(m.Render({.connected = true}));
  EXPECT_EQ(p.families.count("monkeyproof_egress_connections_total"), 0u);
  SupervisorGauges g{.connected = true};
  g.egress = wire::EgressTotals{{5, 3, 100, 2000, 7, 2, 4}, 1, 0};
  const std::string text = m.Render(g);
  p = Parse(text);
  EXPECT_EQ(p.samples.at("monkeyproof_egress_connections_total{verdict=\"allow\"}"), 5);
  EXPECT_EQ(p.samples.at("monkeyproof_egress_connections_total{verdict=\"deny\"}"), 3);
  EXPECT_EQ(p.samples.at("monkeyproof_egress_bytes_total{direction=\"up\"}"), 100);
  EXPECT_EQ(p.samples.at("monkeyproof_egress_bytes_total{direction=\"down\"}"), 2000);
  EXPECT_EQ(p.samples.at("monkeyproof_egress_dns_queries_total{verdict=\"allow\"}"), 7);
  EXPECT_EQ(p.samples.at("monkeyproof_egress_dns_queries_total{verdict=\"deny\"}"), 2);
  EXPECT_EQ(p.samples.at("monkeyproof_egress_gateway_requests_total"), 4);
  EXPECT_EQ(p.samples.at("monkeyproof_egress_reports_dropped_total"), 1);
  EXPECT_EQ(p.samples.at("monkeyproof_egress_reports_refused_total"), 0);
  for (const auto& [name, value] : p.samples) {
    if (name.rfind("monkeyproof_egress_", 0) == 0) {
      EXPECT_EQ(name.find("session"), std::string::npos) << name;
    }
  }
}

}  // namespace
}  // namespace mp::http

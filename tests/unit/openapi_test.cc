// docs/openapi.json against the server's route table (http/router.h) and docs/api.md: every
// route is documented and every documented operation is a route, every $ref resolves, every
// operation is complete and authenticated, and SessionInfo keeps the original's members. A
// structural check of our own (no OpenAPI validator is available to the build). Reads only the
// document named by MP_OPENAPI_DOC.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/messages.h"
#include "http/api_json.h"
#include "http/router.h"

namespace mp::http {
namespace {

using nlohmann::json;

constexpr char kSessionId[] = "s-1abc";

const json& Doc() {
  static const json* const doc = [] {
    std::ifstream in(MP_OPENAPI_DOC);
    std::stringstream text;
    text << in.rdbuf();
    return new json(json::parse(text.str(), nullptr, /*allow_exceptions=*/false));
  }();
  return *doc;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string Upper(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

bool IsHttpMethod(const std::string& key) {
  static const std::set<std::string> kMethods = {"get",     "put",  "post",  "delete",
                                                 "options", "head", "patch", "trace"};
  return kMethods.count(key) != 0;
}

struct Operation {
  std::string path;
  std::string method;  // lower case, as in the document
  const json* op;
};

std::vector<Operation> Operations() {
  std::vector<Operation> ops;
  for (const auto& [path, item] : Doc().at("paths").items()) {
    for (const auto& [method, op] : item.items()) {
      if (IsHttpMethod(method)) ops.push_back({path, method, &op});
    }
  }
  return ops;
}

std::string Where(const Operation& op) { return Upper(op.method) + " " + op.path; }

// Follows a local "#/components/..." reference; nullptr when it does not resolve.
const json* Resolve(const std::string& ref) {
  if (ref.rfind("#/components/", 0) != 0) return nullptr;
  const json::json_pointer pointer(ref.substr(1));
  if (!Doc().contains(pointer)) return nullptr;
  return &Doc().at(pointer);
}

const json& Deref(const json& node) {
  if (node.is_object() && node.contains("$ref") && node.at("$ref").is_string()) {
    const json* target = Resolve(node.at("$ref").get<std::string>());
    if (target != nullptr) return *target;
  }
  return node;
}

// Calls `visit(pointer, node)` for every object in the document.
void ForEachObject(const json& node, const std::string& pointer,
                   const std::function<void(const std::string&, const json&)>& visit) {
  if (node.is_object()) {
    visit(pointer, node);
    for (const auto& [key, child] : node.items()) ForEachObject(child, pointer + "/" + key, visit);
  } else if (node.is_array()) {
    for (size_t i = 0; i < node.size(); ++i) {
      ForEachObject(node[i], pointer + "/" + std::to_string(i), visit);
    }
  }
}

TEST(OpenApiTest, DocumentParsesAsOpenApi303) {
  ASSERT_FALSE(Doc().is_discarded()) << MP_OPENAPI_DOC << " is not valid JSON";
  ASSERT_TRUE(Doc().is_object());
  EXPECT_EQ(Doc().value("openapi", ""), "3.0.3");
  ASSERT_TRUE(Doc().contains("info"));
  EXPECT_EQ(Doc()["info"].value("version", ""), "0.1.0");
  EXPECT_FALSE(Doc()["info"].value("title", "").empty());
  ASSERT_TRUE(Doc().contains("paths") && Doc()["paths"].is_object());
  ASSERT_TRUE(Doc().contains("components") && Doc()["components"].is_object());
}

// The table itself: one entry per Route, in the enum's order (the doc check relies on it).
TEST(OpenApiTest, RouteTableListsEveryRouteOnce) {
  const auto table = RouteTable();
  ASSERT_EQ(table.size(), static_cast<size_t>(Route::kRevokeToken) + 1);
  for (size_t i = 0; i < table.size(); ++i) {
    EXPECT_EQ(static_cast<size_t>(table[i].route), i) << table[i].path;
  }
}

// (a) Every route of the server is in the document.
TEST(OpenApiTest, EveryRouteIsDocumented) {
  ASSERT_FALSE(Doc().is_discarded());
  const json& paths = Doc().at("paths");
  for (const RouteSpec& spec : RouteTable()) {
    const std::string path(spec.path);
    const std::string method = Lower(spec.method);
    ASSERT_TRUE(paths.contains(path)) << "undocumented path " << path;
    EXPECT_TRUE(paths.at(path).contains(method)) << "undocumented " << spec.method << " " << path;
  }
}

// (b) Every documented operation is a route, and the same one the table names for that path.
TEST(OpenApiTest, EveryDocumentedOperationIsARoute) {
  ASSERT_FALSE(Doc().is_discarded());
  const auto ops = Operations();
  EXPECT_EQ(ops.size(), RouteTable().size());
  for (const Operation& op : ops) {
    std::string target = op.path;
    bool has_id = false;
    for (size_t at = target.find("{id}"); at != std::string::npos; at = target.find("{id}")) {
      target.replace(at, 4, kSessionId);
      has_id = true;
    }
    EXPECT_EQ(target.find('{'), std::string::npos) << "unknown template in " << op.path;
    const MatchResult result = MatchRoute(Upper(op.method), target);
    ASSERT_TRUE(result.match.has_value()) << Where(op) << " is not a route (" << target << ")";
    const RouteSpec* spec = nullptr;
    for (const RouteSpec& candidate : RouteTable()) {
      if (candidate.route == result.match->route) spec = &candidate;
    }
    ASSERT_NE(spec, nullptr) << Where(op) << " matched a route missing from RouteTable()";
    EXPECT_EQ(spec->path, op.path) << Where(op) << " matched another route";
    EXPECT_EQ(Lower(spec->method), op.method) << Where(op) << " matched another route";
    if (has_id) {
      EXPECT_EQ(result.match->session_id, kSessionId) << Where(op);
    }
  }
}

// Every "{name}" in a path is declared as a path parameter (path-level or operation-level).
TEST(OpenApiTest, PathTemplatesHaveParameters) {
  ASSERT_FALSE(Doc().is_discarded());
  for (const auto& [path, item] : Doc().at("paths").items()) {
    std::set<std::string> names;
    for (size_t open = path.find('{'); open != std::string::npos; open = path.find('{', open)) {
      const size_t close = path.find('}', open);
      ASSERT_NE(close, std::string::npos) << path;
      names.insert(path.substr(open + 1, close - open - 1));
      open = close;
    }
    for (const auto& [method, op] : item.items()) {
      if (!IsHttpMethod(method)) continue;
      std::set<std::string> declared;
      for (const json* level : {&item, &op}) {
        if (!level->contains("parameters")) continue;
        for (const json& parameter : level->at("parameters")) {
          const json& p = Deref(parameter);
          if (p.value("in", "") == "path" && p.value("required", false)) {
            declared.insert(p.value("name", ""));
          }
        }
      }
      EXPECT_EQ(declared, names) << Upper(method) << " " << path;
    }
  }
}

// (c) Every "$ref" (and discriminator mapping) points at an existing components entry.
TEST(OpenApiTest, EveryRefResolves) {
  ASSERT_FALSE(Doc().is_discarded());
  int refs = 0;
  ForEachObject(Doc(), "", [&](const std::string& pointer, const json& node) {
    if (node.contains("$ref")) {
      ++refs;
      ASSERT_TRUE(node.at("$ref").is_string()) << pointer;
      const std::string ref = node.at("$ref").get<std::string>();
      EXPECT_NE(Resolve(ref), nullptr) << pointer << ": unresolved " << ref;
    }
    if (node.contains("discriminator") && node.at("discriminator").contains("mapping")) {
      for (const auto& [value, ref] : node.at("discriminator").at("mapping").items()) {
        EXPECT_NE(Resolve(ref.get<std::string>()), nullptr) << pointer << ": mapping " << value;
      }
    }
  });
  EXPECT_GT(refs, 0);
}

// (d) Operations are complete: a unique operationId, a summary, and a success response.
TEST(OpenApiTest, EveryOperationHasIdSummaryAndSuccess) {
  ASSERT_FALSE(Doc().is_discarded());
  std::set<std::string> ids;
  for (const Operation& op : Operations()) {
    const json& o = *op.op;
    ASSERT_TRUE(o.contains("operationId") && o.at("operationId").is_string()) << Where(op);
    const std::string id = o.at("operationId").get<std::string>();
    EXPECT_FALSE(id.empty()) << Where(op);
    EXPECT_TRUE(ids.insert(id).second) << Where(op) << ": duplicate operationId " << id;
    EXPECT_FALSE(o.value("summary", "").empty()) << Where(op) << ": no summary";
    ASSERT_TRUE(o.contains("responses") && o.at("responses").is_object()) << Where(op);
    bool success = false;
    for (const auto& [code, response] : o.at("responses").items()) {
      if (code == "101" || (code.size() == 3 && code[0] == '2')) success = true;
      EXPECT_FALSE(Deref(response).value("description", "").empty())
          << Where(op) << " " << code << ": no description";
    }
    EXPECT_TRUE(success) << Where(op) << ": no 2xx or 101 response";
  }
}

// (e) Auth is on every route: the bearer scheme is required globally, and every operation
// declares its 401.
TEST(OpenApiTest, EveryOperationRequiresAuth) {
  ASSERT_FALSE(Doc().is_discarded());
  const json& schemes = Doc().at("components").at("securitySchemes");
  ASSERT_TRUE(schemes.contains("bearerAuth"));
  EXPECT_EQ(schemes["bearerAuth"].value("type", ""), "http");
  EXPECT_EQ(schemes["bearerAuth"].value("scheme", ""), "bearer");
  ASSERT_TRUE(Doc().contains("security"));
  EXPECT_EQ(Doc()["security"], json::parse(R"([{"bearerAuth": []}])"));
  for (const Operation& op : Operations()) {
    EXPECT_TRUE(op.op->at("responses").contains("401")) << Where(op) << ": no 401";
    if (op.op->contains("security")) {
      const json& security = op.op->at("security");
      EXPECT_FALSE(security.empty()) << Where(op) << ": security turned off";
      for (const json& requirement : security) {
        EXPECT_FALSE(requirement.empty()) << Where(op) << ": an anonymous alternative";
      }
    }
  }
}

// The failure limiter answers 429 before any route runs, so every operation that can answer
// 401 can answer 429 too; and it never refuses a valid credential, which the description says.
TEST(OpenApiTest, EveryAuthenticatedOperationListsTheLimitersAnswer) {
  ASSERT_FALSE(Doc().is_discarded());
  for (const Operation& op : Operations()) {
    if (!op.op->at("responses").contains("401")) continue;
    EXPECT_TRUE(op.op->at("responses").contains("429")) << Where(op) << ": no 429";
  }
  const std::string description =
      Doc().at("components").at("responses").at("TooManyRequests").value("description", "");
  EXPECT_EQ(description.find("even with a correct token"), std::string::npos) << description;
  EXPECT_NE(description.find("a valid credential is never refused"), std::string::npos)
      << description;
}

const json& OperationAt(const std::string& path, const std::string& method) {
  return Doc().at("paths").at(path).at(method);
}

// The WebSocket upgrade: 101, the token query parameter, and every message in both directions.
TEST(OpenApiTest, WebSocketRouteListsItsMessages) {
  ASSERT_FALSE(Doc().is_discarded());
  const json& op = OperationAt("/sessions/{id}/ws", "get");
  ASSERT_TRUE(op.at("responses").contains("101"));
  const std::string description = op["responses"]["101"].value("description", "");
  bool has_token = false;
  for (const json& parameter : op.value("parameters", json::array())) {
    const json& p = Deref(parameter);
    if (p.value("in", "") == "query" && p.value("name", "") == "token") has_token = true;
  }
  EXPECT_TRUE(has_token);
  const json& schemas = Doc().at("components").at("schemas");
  for (const char* type : {"catchup", "stdout", "stderr", "gap", "lagged", "killed", "exit",
                           "error", "stdin", "resize", "signal", "close-stdin"}) {
    EXPECT_NE(description.find(std::string("`") + type + "`"), std::string::npos) << type;
  }
  for (const char* name : {"WsCatchup", "WsOutput", "WsGap", "WsLagged", "WsKilled", "WsExit",
                           "WsError", "WsStdin", "WsResize", "WsSignal", "WsCloseStdin"}) {
    ASSERT_TRUE(schemas.contains(name)) << name;
    EXPECT_TRUE(schemas[name]["properties"].contains("type")) << name;
  }
}

// The offsets of transcript and raw output travel in headers that clients rely on.
TEST(OpenApiTest, OutputRoutesDeclareTheirHeaders) {
  ASSERT_FALSE(Doc().is_discarded());
  const json& transcript = OperationAt("/sessions/{id}/transcript", "get")["responses"]["200"];
  for (const char* header :
       {"x-transcript-offset", "x-transcript-total-size", "x-transcript-next-offset"}) {
    EXPECT_TRUE(transcript["headers"].contains(header)) << header;
  }
  // Transcript offsets are not output offsets: no output gaps on this route.
  EXPECT_FALSE(transcript["headers"].contains("x-output-gaps"));
  const json& output = OperationAt("/sessions/{id}/output", "get")["responses"]["200"];
  for (const char* header : {"x-output-offset", "x-output-next-offset", "x-output-total-size",
                             "x-output-ended", "x-output-gaps"}) {
    EXPECT_TRUE(output["headers"].contains(header)) << header;
  }
  const json& too_many = Doc().at("components").at("responses").at("TooManyRequests");
  EXPECT_TRUE(too_many["headers"].contains("Retry-After"));
}

// (f) SessionInfo keeps every member of the original's (../shared/monkeyproof-api.md) and
// documents ours (docs/api.md).
TEST(OpenApiTest, SessionInfoHasEveryMember) {
  ASSERT_FALSE(Doc().is_discarded());
  const json& info = Doc().at("components").at("schemas").at("SessionInfo");
  const json& properties = info.at("properties");
  const json& required = info.at("required");
  for (const char* key :
       {"id",        "task",     "taskPreview", "cwd",       "command",  "type",
        "status",    "exitCode", "pid",         "createdAt", "endedAt",  "outputLines",
        "wsClients", "owner",    "labels",      "state",     "preset",   "outputBytes",
        "endReason", "signal",   "pty",         "resources", "createdBy"}) {
    EXPECT_TRUE(properties.contains(key)) << key;
    EXPECT_NE(std::find(required.begin(), required.end(), key), required.end()) << key;
  }
  const json& status = Deref(properties.at("status"));
  EXPECT_EQ(status.at("enum"), json::parse(R"(["running", "exited", "killed"])"));
}

// (g) PolicyInfo documents every member GET /policies writes (PolicyListJson), and its limits
// every member of the nested object, all of them required.
TEST(OpenApiTest, PolicyInfoDocumentsEveryMemberTheServerWrites) {
  ASSERT_FALSE(Doc().is_discarded());
  wire::PolicyInfo p{.name = "claude",
                     .type = wire::SessionType::kPrint,
                     .description = "an agent",
                     .bypasses_agent_permissions = true,
                     .memory_max_bytes = uint64_t{1} << 32,
                     .pids_max = 2048,
                     .cpu_max_percent = 200,
                     .wall_seconds = 14400,
                     .idle_seconds = 3600,
                     .network = wire::NetworkMode::kHost};
  const json written = json::parse(PolicyListJson({{p}, false}));
  const json& entry = written.at("policies").at(0);
  const auto expect_documented = [](const json& object, const json& schema) {
    const json& properties = schema.at("properties");
    const json& required = schema.at("required");
    EXPECT_EQ(object.size(), properties.size()) << object.dump() << " vs " << properties.dump();
    for (const auto& [key, value] : object.items()) {
      EXPECT_TRUE(properties.contains(key)) << key;
      EXPECT_NE(std::find(required.begin(), required.end(), key), required.end()) << key;
    }
  };
  const json& info = Doc().at("components").at("schemas").at("PolicyInfo");
  expect_documented(entry, info);
  expect_documented(entry.at("limits"), Deref(info.at("properties").at("limits")));
  const json& network = info.at("properties").at("network").at("enum");
  EXPECT_NE(std::find(network.begin(), network.end(), entry.at("network")), network.end());
}

}  // namespace
}  // namespace mp::http

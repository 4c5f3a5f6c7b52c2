#!/usr/bin/env python3
"""A scripted stand-in for the model APIs, for offline end-to-end tests of the agent CLIs.

Serves on loopback (Python 3 standard library only):

- POST /v1/responses (the OpenAI Responses API, SSE) for Codex;
- POST /v1/messages (the Anthropic Messages API, SSE or JSON) and
  POST /v1/messages/count_tokens for Claude Code and OpenCode;
- POST /v1beta/models/MODEL:streamGenerateContent?alt=sse (SSE), :generateContent (JSON) and
  :countTokens (the Gemini API) for Gemini CLI;
- GET /v1/models for Codex and Claude Code, with one model.

Each conversation takes two turns. Turn 1 (the request holds no tool result yet) answers with a
call of the CLI's file-writing tool that writes CONTENT to FILE; turn 2 (a tool result is
present) answers with the final text. Requests that offer no tools (titles, summaries) get
plain text, and those that ask for JSON in a schema (Gemini CLI's model router) get an object
that fits the schema. The prompt names FILE (an absolute path) and CONTENT as
"Create the file FILE containing the text: CONTENT" (the rest of that line); without such a
sentence, --file and --content apply.

Every request is logged to --log as one JSON line (time, method, path, the headers that say
who called, a digest of the body) and a short line on stderr, so a failed run can be
diagnosed from the log alone. Key values (Authorization, x-api-key, x-goog-api-key) are logged
as their length only; the expected keys may be given with --expect-key, and a request carrying
none of them is answered 401 and logged as such.

    stub_model.py --port 0 --port-file PORT_FILE --log requests.jsonl --expect-key KEY \
        [--tls-cert CERT.pem --tls-key KEY.pem]

With --tls-cert it serves HTTPS (the agent e2e test's upstream behind the credential gateway).
"""

import argparse
import http.server
import json
import os
import re
import socketserver
import ssl
import sys
import threading
import time
import uuid

FINAL_TEXT = "Done: the file is written."
TARGET_RE = re.compile(r"Create the file (/\S+) containing the text: ([^\n]*)")
PLAIN_TEXT = "Stub title"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port (see --port-file)")
    p.add_argument("--port-file", help="written with the bound port once listening")
    p.add_argument("--file", default="/nonexistent/stub-model-file",
                   help="absolute path of the file the agent writes, unless the prompt says")
    p.add_argument("--content", default="hello from the agent\n")
    p.add_argument("--log", help="append one JSON line per request here")
    p.add_argument("--expect-key", action="append", default=[],
                   help="refuse requests that carry none of these API keys (repeatable)")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    p.add_argument("--tls-key", help="the key of --tls-cert (PEM)")
    args = p.parse_args()
    if not os.path.isabs(args.file):
        p.error(f"--file must be an absolute path, got {args.file!r}")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    return args


ARGS = None
LOG_LOCK = threading.Lock()
COUNTER = [0]


def log(entry):
    line = json.dumps(entry, sort_keys=True)
    with LOG_LOCK:
        COUNTER[0] += 1
        entry_no = COUNTER[0]
        if ARGS.log:
            with open(ARGS.log, "a", encoding="utf-8") as f:
                f.write(line + "\n")
    print(f"stub_model: #{entry_no} {entry.get('method')} {entry.get('path')} -> "
          f"{entry.get('status')} {entry.get('answer', '')}", file=sys.stderr, flush=True)


def strings(value):
    """Every string inside a decoded JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)


def target(conversation):
    """(FILE, CONTENT) from the last prompt in `conversation` that names them, else the
    defaults."""
    found = None
    for text in strings(conversation):
        # `opencode run` sends an argument that holds spaces in double quotes.
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1].replace('\\"', '"')
        for m in TARGET_RE.finditer(text):
            found = (m.group(1), m.group(2) + "\n")
    return found or (ARGS.file, ARGS.content)


def sse(event, data):
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


# ---- Codex: the Responses API.

def responses_has_tool_result(body):
    """Whether the conversation ends with a tool result (then the turn's answer is due), not
    with a user message (then the tool call is)."""
    items = [i for i in body.get("input") or [] if isinstance(i, dict)]
    return bool(items) and items[-1].get("type", "").endswith("_call_output")


def responses_tool_names(body):
    names = {}
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        name = tool.get("name") or (tool.get("function") or {}).get("name")
        if name:
            names[name] = tool.get("type", "function")
    return names


def apply_patch_text(path, content):
    lines = content.rstrip("\n").split("\n")
    return ("*** Begin Patch\n*** Add File: " + path + "\n" +
            "".join("+" + line + "\n" for line in lines) + "*** End Patch\n")


def codex_tool_call(tools, path, content):
    """The item that makes Codex write the file, given the tools the request offers."""
    call_id = "call_" + uuid.uuid4().hex[:16]
    patch = apply_patch_text(path, content)
    if tools.get("apply_patch") == "custom":
        return {"type": "custom_tool_call", "id": "ctc_" + call_id, "call_id": call_id,
                "name": "apply_patch", "input": patch, "status": "completed"}, "apply_patch (custom)"
    if "apply_patch" in tools:
        return {"type": "function_call", "id": "fc_" + call_id, "call_id": call_id,
                "name": "apply_patch", "arguments": json.dumps({"input": patch}),
                "status": "completed"}, "apply_patch (function)"
    script = "printf '%s' " + shell_quote(content) + " > " + shell_quote(path)
    if "exec_command" in tools:
        return {"type": "function_call", "id": "fc_" + call_id, "call_id": call_id,
                "name": "exec_command", "arguments": json.dumps({"cmd": script}),
                "status": "completed"}, "exec_command"
    return {"type": "function_call", "id": "fc_" + call_id, "call_id": call_id, "name": "shell",
            "arguments": json.dumps({"command": ["bash", "-lc", script]}),
            "status": "completed"}, "shell"


def shell_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def codex_events(body):
    resp_id = "resp_" + uuid.uuid4().hex[:20]
    model = body.get("model", "stub-model")
    tools = responses_tool_names(body)
    if tools and not responses_has_tool_result(body):
        path, content = target(body.get("input"))
        item, answer = codex_tool_call(tools, path, content)
        answer += " " + path
    else:
        text = FINAL_TEXT if tools else PLAIN_TEXT
        item = {"type": "message", "id": "msg_" + uuid.uuid4().hex[:16], "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}
        answer = "text"
    base = {"id": resp_id, "object": "response", "model": model, "created_at": int(time.time())}
    out = [sse("response.created", {"type": "response.created",
                                     "response": dict(base, status="in_progress", output=[])}),
           sse("response.output_item.added", {"type": "response.output_item.added",
                                               "output_index": 0, "item": item})]
    if item["type"] == "message":
        out.append(sse("response.output_text.delta", {
            "type": "response.output_text.delta", "item_id": item["id"], "output_index": 0,
            "content_index": 0, "delta": item["content"][0]["text"]}))
    out.append(sse("response.output_item.done", {"type": "response.output_item.done",
                                                  "output_index": 0, "item": item}))
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 15}
    out.append(sse("response.completed", {"type": "response.completed",
                                           "response": dict(base, status="completed",
                                                            output=[item], usage=usage)}))
    return out, answer


# ---- Claude Code: the Messages API.

def messages_has_tool_result(body):
    messages = body.get("messages") or []
    if not messages:
        return False
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    return isinstance(content, list) and any(
        isinstance(c, dict) and c.get("type") == "tool_result" for c in content)


# The file-writing tool of each Messages API client and its path argument.
WRITE_TOOLS = (("Write", "file_path"),  # Claude Code
               ("write", "filePath"))  # OpenCode


def claude_reply(body):
    """(content blocks, stop_reason, answer) for a Messages request."""
    tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
    for name, path_arg in WRITE_TOOLS:
        if name not in tools or messages_has_tool_result(body):
            continue
        path, content = target(body.get("messages"))
        block = {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20], "name": name,
                 "input": {path_arg: path, "content": content}}
        return [block], "tool_use", name + " " + path
    text = FINAL_TEXT if tools else PLAIN_TEXT
    return [{"type": "text", "text": text}], "end_turn", "text"


def claude_events(body, blocks, stop_reason):
    msg_id = "msg_" + uuid.uuid4().hex[:20]
    usage = {"input_tokens": 10, "output_tokens": 0, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0}
    out = [sse("message_start", {"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant",
        "model": body.get("model", "stub-model"), "content": [], "stop_reason": None,
        "stop_sequence": None, "usage": usage}})]
    for i, block in enumerate(blocks):
        if block["type"] == "tool_use":
            start = dict(block, input={})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        out.append(sse("content_block_start", {"type": "content_block_start", "index": i,
                                               "content_block": start}))
        out.append(sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                               "delta": delta}))
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                     "usage": {"output_tokens": 5}}))
    out.append(sse("message_stop", {"type": "message_stop"}))
    return out


# ---- Gemini CLI: the Gemini API (generativelanguage), v1beta.

GEMINI_PATH_RE = re.compile(r"^/v1[a-z0-9]*/models/([^/:]+):([A-Za-z]+)$")


def gemini_has_function_response(body):
    """Whether the conversation ends with the result of a function call."""
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
    return bool(contents) and any(
        isinstance(p, dict) and "functionResponse" in p for p in contents[-1].get("parts") or [])


def gemini_tool_names(body):
    return {f.get("name") for t in body.get("tools") or [] if isinstance(t, dict)
            for f in t.get("functionDeclarations") or [] if isinstance(f, dict)}


def schema_example(schema):
    """A value that fits a JSON schema (the Gemini API's upper-case types too): the first enum
    value, 10 for numbers, false, a one-element array, an object with every property."""
    if not isinstance(schema, dict):
        return "stub"
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        return {k: schema_example(v) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [schema_example(schema.get("items"))]
    if kind in ("integer", "number"):
        return 10
    if kind == "boolean":
        return False
    return "stub"


def gemini_reply(body):
    """(parts, answer) for a generateContent or streamGenerateContent request."""
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if schema or config.get("responseMimeType") == "application/json":
        value = schema_example(schema) if schema else {}
        return [{"text": json.dumps(value)}], "json " + json.dumps(value)
    tools = gemini_tool_names(body)
    if "write_file" in tools and not gemini_has_function_response(body):
        path, content = target(body.get("contents"))
        call = {"name": "write_file", "args": {"file_path": path, "content": content}}
        return [{"functionCall": call}], "write_file " + path
    return [{"text": FINAL_TEXT if tools else PLAIN_TEXT}], "text"


def gemini_response(model, parts):
    return {"candidates": [{"content": {"role": "model", "parts": parts},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                              "totalTokenCount": 15},
            "modelVersion": model, "responseId": "stub-" + uuid.uuid4().hex[:16]}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stub-model/1"

    def log_message(self, fmt, *args):  # the JSON log replaces the default access log
        pass

    def entry(self, body_bytes):
        auth = self.headers.get("Authorization", "")
        key = self.headers.get("x-api-key", "")
        goog_key = self.headers.get("x-goog-api-key", "")
        return {"time": round(time.time(), 3), "method": self.command, "path": self.path,
                "user_agent": self.headers.get("User-Agent", ""),
                "authorization_len": len(auth), "x_api_key_len": len(key),
                "x_goog_api_key_len": len(goog_key), "body_bytes": len(body_bytes)}

    def key_ok(self):
        if not ARGS.expect_key:
            return True
        auth = self.headers.get("Authorization", "")
        keys = (self.headers.get("x-api-key", ""), self.headers.get("x-goog-api-key", ""),
                auth.removeprefix("Bearer ").strip())
        return any(k in keys for k in ARGS.expect_key)

    def send(self, status, content_type, chunks, entry):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("request-id", "req_stub")
        payload = b"".join(chunks)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()
        entry["status"] = status
        log(entry)

    def do_GET(self):
        entry = self.entry(b"")
        path = self.path.split("?")[0]
        if path in ("/v1/models", "/models"):
            models = {"data": [{"id": "stub-model", "object": "model", "type": "model",
                                "display_name": "Stub", "created_at": "2025-01-01T00:00:00Z"}],
                      "models": [], "object": "list", "has_more": False}
            self.send(200, "application/json", [json.dumps(models).encode()], entry)
        else:
            entry["answer"] = "unknown path"
            self.send(404, "application/json", [b'{"error":"not found"}'], entry)

    def do_HEAD(self):
        entry = self.entry(b"")
        self.send(200, "text/plain", [b""], entry)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        entry = self.entry(raw)
        try:
            body = json.loads(raw or b"{}")
        except ValueError as e:
            entry["answer"] = f"bad JSON: {e}"
            self.send(400, "application/json", [b'{"error":"bad json"}'], entry)
            return
        entry["model"] = body.get("model")
        entry["stream"] = body.get("stream")
        entry["tools"] = sorted(t.get("name") or (t.get("function") or {}).get("name") or
                                t.get("type", "?") for t in body.get("tools") or []
                                if isinstance(t, dict) and "functionDeclarations" not in t)
        entry["tools"] += sorted(gemini_tool_names(body) - {None})
        if not self.key_ok():
            entry["answer"] = "wrong or missing API key"
            self.send(401, "application/json", [json.dumps({
                "type": "error", "error": {"type": "authentication_error",
                                           "message": "stub: wrong API key"}}).encode()], entry)
            return
        path = self.path.split("?")[0]
        gemini = GEMINI_PATH_RE.match(path)
        if gemini:
            model, method = gemini.groups()
            entry["model"] = model
            if method == "countTokens":
                entry["answer"] = "count"
                self.send(200, "application/json", [b'{"totalTokens": 10}'], entry)
            elif method in ("generateContent", "streamGenerateContent"):
                parts, entry["answer"] = gemini_reply(body)
                reply = gemini_response(model, parts)
                if method == "streamGenerateContent":
                    self.send(200, "text/event-stream",
                              [f"data: {json.dumps(reply)}\r\n\r\n".encode()], entry)
                else:
                    self.send(200, "application/json", [json.dumps(reply).encode()], entry)
            else:
                entry["answer"] = "unknown method"
                self.send(404, "application/json", [b'{"error":"not found"}'], entry)
        elif path in ("/v1/responses", "/responses"):
            events, entry["answer"] = codex_events(body)
            self.send(200, "text/event-stream", events, entry)
        elif path == "/v1/messages/count_tokens":
            entry["answer"] = "count"
            self.send(200, "application/json", [b'{"input_tokens": 10}'], entry)
        elif path == "/v1/messages":
            blocks, stop, entry["answer"] = claude_reply(body)
            if body.get("stream"):
                self.send(200, "text/event-stream", claude_events(body, blocks, stop), entry)
            else:
                message = {"id": "msg_" + uuid.uuid4().hex[:20], "type": "message",
                           "role": "assistant", "model": body.get("model", "stub-model"),
                           "content": blocks, "stop_reason": stop, "stop_sequence": None,
                           "usage": {"input_tokens": 10, "output_tokens": 5}}
                self.send(200, "application/json", [json.dumps(message).encode()], entry)
        else:
            entry["answer"] = "unknown path"
            self.send(404, "application/json", [b'{"error":"not found"}'], entry)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls = None  # an ssl.SSLContext with --tls-cert

    def get_request(self):
        # The TLS handshake happens in the request's thread (TlsHandler.setup), so that one
        # slow client does not hold up accept.
        sock, addr = self.socket.accept()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


class TlsHandler(Handler):
    def setup(self):
        self.request.do_handshake()
        super().setup()


def main():
    global ARGS
    ARGS = parse_args()
    server = Server((ARGS.host, ARGS.port), TlsHandler if ARGS.tls_cert else Handler)
    if ARGS.tls_cert:
        server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.tls.load_cert_chain(ARGS.tls_cert, ARGS.tls_key)
    port = server.server_address[1]
    if ARGS.port_file:
        tmp = ARGS.port_file + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{port}\n")
        os.rename(tmp, ARGS.port_file)
    print(f"stub_model: listening on {ARGS.host}:{port}" + (" (HTTPS)" if server.tls else ""),
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

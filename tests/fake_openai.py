"""A scripted OpenAI-compatible chat server on 127.0.0.1 for the fast tests (the slow tests use llama.cpp).

It speaks the real HTTP protocol the ``openai`` client uses, so retries, status codes,
timeouts and the client's parsing are exercised for real; what it answers is
scripted per test: ``answer(prompt_text) -> (status, body_text)``.
"""
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, answer, delay=0.0, key=None):
        self.answer = answer
        self.delay = delay
        self.key = key
        self.requests = Counter()  # prompt text -> number of requests
        self.formats = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.endswith("/embeddings"):
                    with server.lock:
                        server.requests["embeddings"] += 1
                    vectors = [[float(len(text)), 1.0, 0.5] for text in body["input"]]
                    return self._send(200, {"object": "list", "model": body["model"],
                                            "data": [{"object": "embedding", "index": i, "embedding": v}
                                                     for i, v in enumerate(vectors)],
                                            "usage": {"prompt_tokens": 1, "total_tokens": 1}})
                prompt = body["messages"][-1]["content"]
                with server.lock:
                    server.requests[prompt] += 1
                    server.formats.append((body.get("response_format") or {}).get("type"))
                if server.key and self.headers.get("Authorization") != f"Bearer {server.key}":
                    return self._send(401, {"error": {"message": "Incorrect API key provided"}})
                time.sleep(server.delay)
                status, text = server.answer(prompt, body)
                if status != 200:
                    return self._send(status, {"error": {"message": text}})
                self._send(200, {
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def good_item_answer(prompt):
    """A valid answer naming the item's title (taken from the prompt) in its summary."""
    line = prompt.split("Item Information: ", 1)[1].split("\n")[0]
    title = line.split(" | ")[0].split(": ", 1)[-1].rstrip(".")
    return json.dumps({"summary": f"A well liked item called {title}.",
                       "tags": {"level1": ["Movies"], "level2": ["Drama"], "level3": ["Court Drama"]},
                       "edges": [["movies", "drama"], ["Drama", "court drama"]]})

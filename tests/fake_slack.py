"""A real HTTP server on 127.0.0.1 standing in for Slack's Web API (slack_sdk's WebClient takes its base_url)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeSlack:
    """Records every request; answers from a script of (status, headers, body, delay), then with ok."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[tuple[int, dict, dict, float]] = []
        # None: any token is accepted; a set: any other token is answered as an expired one.
        self.valid_tokens: set[str] | None = None
        self._count = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = {"path": self.path, "headers": dict(self.headers), "json": json.loads(body or b"{}"), "answer": None}
                fake.requests.append(request)
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if fake.valid_tokens is not None and token not in fake.valid_tokens:
                    status, headers, payload, delay = 200, {}, {"ok": False, "error": "token_expired"}, 0.0  # as Slack says it
                else:
                    status, headers, payload, delay = fake.script.pop(0) if fake.script else (200, {}, None, 0.0)
                time.sleep(delay)
                if payload is None:
                    fake._count += 1
                    payload = {"ok": True, "channel": "C0ALERTS", "ts": f"1700000000.{fake._count:06d}"}
                request["answer"] = {"status": status, **payload}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for key, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def posts(self) -> list[dict]:
        return [r["json"] for r in self.requests if r["path"] == "/api/chat.postMessage"]

    def delivered(self) -> list[dict]:
        """The posts Slack accepted (answered 200 with ok): the messages a channel shows. A post scripted to
        hang past the client's timeout with an error answer stands for one Slack never processed."""
        return [
            r["json"] for r in self.requests
            if r["path"] == "/api/chat.postMessage" and r["answer"] and r["answer"]["status"] == 200 and r["answer"].get("ok")
        ]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

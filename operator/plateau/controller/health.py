"""The liveness endpoint: /healthz is 200 while evaluation cycles keep ending, 503 once they stop.

kopf's own endpoint shows only that its event loop answers; a loop stuck on a call that never
returns looks alive to it. Here the evaluation loop beats after every pass (a standby's passes
too) and the probe compares the last beat with `stale_after` seconds. The server runs in its
own thread, so a blocked event loop reads as stale rather than as a probe timeout, and it
writes no access-log line: a probe every few seconds would drown the operator's log.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

PATH = "/healthz"


class Heartbeat:
    def __init__(self, stale_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self.last = clock()  # start-up counts as a beat: kopf's start gets `stale_after` too

    def beat(self) -> None:
        self.last = self.clock()

    def report(self) -> tuple[bool, dict[str, Any]]:
        age = self.clock() - self.last
        return age <= self.stale_after, {"lastCycleSecondsAgo": round(age, 3), "staleAfterSeconds": self.stale_after}


def serve(heartbeat: Heartbeat, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve /healthz on host:port in a daemon thread; `shutdown()` the result to stop it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            if self.path.split("?", 1)[0] != PATH:
                self.send_error(404)
                return
            healthy, report = heartbeat.report()
            body = json.dumps(report).encode()
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # no access log
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="plateau-healthz", daemon=True).start()
    return server

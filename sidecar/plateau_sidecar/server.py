"""HTTP: `/metrics` for Prometheus and `/push` for trainers, on the standard library's server.

Why not aiohttp: importing it alone takes the process past the sidecar's 40 MB memory budget.
Threads are fine here: requests are short, and a bound on requests in flight (answered 429
beyond it) keeps a flood of pushes from growing threads or buffered bodies without limit.

Slow clients: every connection (one request: HTTP/1.0) has a total deadline for its request
line, headers and body, and for the answer, not a timeout per receive that a client sending a
byte now and then resets forever. A connection takes a slot (`max_inflight`) only once its
headers are in, so clients dripping headers cannot keep a scrape out; they are bounded apart
(`max_connections`, then 429) and cut off at the deadline. What a request may make the server
read is capped by bytes actually read: the head, then the body its Content-Length allows.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from .collector import Exposition
from .deadline import MAX_HEAD_BYTES, DeadlineReader, RequestTooLarge, arm, content_length
from .ledger import Origin
from .protocol import HEALTH_PATH, METRICS_PATH, PUSH_PATH, PUSH_REPORTER_HEADER, PUSH_SEQUENCE_HEADER
from .records import Journal, ingest_payload, too_many_records
from .store import BadInput, MetricStore, RecordError

log = logging.getLogger("plateau_sidecar")

DEFAULT_MAX_INFLIGHT = 8
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_REQUEST_SECONDS = 10.0  # the whole request, headers and body, and its answer
DEFAULT_MAX_CONNECTIONS = 64  # connections open at once per endpoint, most of them still sending headers
_DISCARD_LIMIT = 16 * 1024 * 1024  # read at most this much of a too-large body, to answer 413
# Reading a request only to refuse it is bounded in time and size: the 429 runs on the accepting thread.
_REJECT_READ_SECONDS = 0.05
_REJECT_READ_BYTES = 64 * 1024
# An answer due once the request's deadline has passed (the 408 for a body that stalled until
# then, or a push whose ingest took that long) still gets this long to go out.
_LATE_ANSWER_SECONDS = 1.0
# At shutdown, the longest a server waits for the answers under way: a scrape's or a push's
# takes milliseconds. Twice, with the file drain (11 s) and the linger (15 s): within the pod's 30 s grace.
CLOSE_GRACE_SECONDS = 1.0
_CONTENT_LENGTH = re.compile(rb"^content-length:\s*(\d+)", re.IGNORECASE | re.MULTILINE)


def _refusal(status: HTTPStatus, error: str, headers: str = "") -> bytes:
    """A whole answer, built once: for a request refused before (or without) a handler parsing it."""
    body = json.dumps({"error": error}).encode()
    head = (
        f"HTTP/1.0 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n{headers}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


_TOO_MANY_REQUESTS = _refusal(HTTPStatus.TOO_MANY_REQUESTS, "too many requests in flight, retry later",
                              "Retry-After: 1\r\n")
_HEAD_TOO_LARGE = _refusal(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                           f"the request line and headers exceed {MAX_HEAD_BYTES} bytes")


class SidecarServer(ThreadingHTTPServer):
    """One listening socket. With an exposition it serves /metrics; with `push` it serves /push.
    /healthz answers 503 with what `health` returns, when that is not None (e.g. a dead reader)."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: connections beyond it would be refused, not answered

    def __init__(
        self,
        address: tuple[str, int],
        store: MetricStore,
        exposition: Exposition | None = None,
        push: bool = False,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        health: Callable[[], str | None] | None = None,
        journal: Journal | None = None,
        request_seconds: float = DEFAULT_REQUEST_SECONDS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.store = store
        self.exposition = exposition
        self.push = push
        self.health = health
        self.journal = journal  # where accepted pushes are written before they are answered
        self.max_body_bytes = max_body_bytes
        self.max_inflight = max_inflight
        self.request_seconds = request_seconds
        self.max_connections = max_connections
        self.slots = threading.BoundedSemaphore(max_inflight)  # taken by a handler once its headers are in
        self._connections = threading.BoundedSemaphore(max_connections)
        self._open = 0  # connections accepted and not yet closed, for close() to wait on
        self._closed = threading.Condition()
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str)  # an AF_INET or AF_INET6 address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> threading.Thread:
        # A short poll interval: shutdown() waits for it.
        thread = threading.Thread(target=self.serve_forever, args=(0.1,), name=f"http-{self.url}", daemon=True)
        thread.start()
        return thread

    def close(self, grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Stop taking connections, then give those accepted up to `grace` seconds for their
        answers. The request threads are daemons: without this wait, the process exiting would
        cut an answer short, such as the scrape the linger waited for. Bounded, because a client
        that drips its request would otherwise hold the shutdown until its deadline."""
        self.shutdown()
        self.server_close()
        with self._closed:
            self._closed.wait_for(lambda: self._open == 0, grace)

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        # Runs on the accepting thread: reject here, before a handler thread exists.
        if not self._connections.acquire(blocking=False):
            self.store.report_bad(BadInput.TOO_MANY_REQUESTS, f"more than {self.max_connections} connections open")
            _refuse(request, _TOO_MANY_REQUESTS)
            self.shutdown_request(request)
            return
        with self._closed:
            self._open += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done()
            raise

    def process_request_thread(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        self._connections.release()
        with self._closed:
            self._open -= 1
            self._closed.notify_all()

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        # A client that goes away mid-request is routine; anything else is a bug worth a traceback.
        failure = sys.exc_info()[1]
        level = logging.DEBUG if isinstance(failure, OSError) else logging.ERROR
        log.log(level, "request from %s failed: %r", client_address, failure, exc_info=level == logging.ERROR)


def _refuse(request: socket.socket, answer: bytes) -> None:
    """Send `answer` to a request that is not served. What is left of the request is read first
    (briefly, and bounded), because closing a socket with unread input resets the connection
    before the client can read the answer."""
    try:
        request.settimeout(_REJECT_READ_SECONDS)
        _read_request(request)
        request.sendall(answer)
    except OSError:
        pass


def _read_request(request: socket.socket) -> None:
    """Read up to the end of the request's body, or until the client pauses or the (total)
    time is up: a client sending a byte now and then must not hold the accepting thread."""
    data = b""
    deadline = time.monotonic() + _REJECT_READ_SECONDS
    while len(data) < _REJECT_READ_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        request.settimeout(remaining)
        head, blank_line, body = data.partition(b"\r\n\r\n")
        if blank_line:
            length = _CONTENT_LENGTH.search(head)
            if len(body) >= (int(length.group(1)) if length else 0):
                return
        try:
            chunk = request.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        data += chunk


class _Handler(BaseHTTPRequestHandler):
    server: SidecarServer
    server_version = "plateau-sidecar"

    def setup(self) -> None:
        self.timeout = self.server.request_seconds
        super().setup()
        self.deadline = time.monotonic() + self.server.request_seconds
        self.rfile.close()  # the buffered file over the socket, replaced by one that keeps the deadline
        self._reader = DeadlineReader(self.connection, self.deadline, MAX_HEAD_BYTES)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except RequestTooLarge:  # the head passed MAX_HEAD_BYTES (reads of a body catch their own)
            self.close_connection = True
            _refuse(self.connection, _HEAD_TOO_LARGE)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def _send(self, status: HTTPStatus, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        # sendall's timeout bounds the whole answer: the request's deadline, or a moment past it
        arm(self.connection, max(self.deadline, time.monotonic() + _LATE_ANSWER_SECONDS))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: HTTPStatus, payload: dict[str, object], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, handle: Callable[[], None]) -> None:
        """Every request gets an answer: an unexpected failure is a 500, not a closed socket.
        A request is served in one of the `max_inflight` slots, or answered 429."""
        if not self.server.slots.acquire(blocking=False):
            self.server.store.report_bad(BadInput.TOO_MANY_REQUESTS,
                                         f"more than {self.server.max_inflight} requests in flight")
            self._discard(content_length(self.headers) or 0)  # so the client reads the answer, not a reset
            self._send_json(HTTPStatus.TOO_MANY_REQUESTS, {"error": "too many requests in flight, retry later"},
                            headers={"Retry-After": "1"})
            return
        try:
            handle()
        except OSError:
            raise  # the client went away or ran out of time: nobody to answer (handle_error logs it)
        except Exception as e:
            log.exception("%s %s failed", self.command, self._path())
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {e!r:.200}"})
        finally:
            self.server.slots.release()

    def _get(self) -> None:
        path = self._path()
        if path == METRICS_PATH and self.server.exposition is not None:
            self._send(HTTPStatus.OK, self.server.exposition.render(), CONTENT_TYPE_LATEST)
        elif path == HEALTH_PATH:
            problem = self.server.health() if self.server.health is not None else None
            if problem is None:
                self._send(HTTPStatus.OK, b"ok\n", "text/plain")
            else:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"unhealthy: {problem}\n".encode(), "text/plain")
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"})

    def _post(self) -> None:
        if self._path() != PUSH_PATH or not self.server.push:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"POST records to {PUSH_PATH}"})
            return
        length = content_length(self.headers)
        if length is None:  # read(-1) would read until the client closes, past every limit
            self._send_json(HTTPStatus.LENGTH_REQUIRED, {
                "error": "one Content-Length header of decimal digits is required (no Transfer-Encoding)"})
            return
        limit = self.server.max_body_bytes
        if length > limit:
            self.server.store.report_bad(BadInput.PUSH_TOO_LARGE, f"a push of {length} bytes exceeds {limit}")
            self._discard(length)
            self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body exceeds {limit} bytes"})
            return
        # The buffer may hold the body's start already, and may read ahead one buffer's worth.
        self._reader.budget = length + io.DEFAULT_BUFFER_SIZE
        try:
            body = self.rfile.read(length)
        except TimeoutError:  # the client stalled mid-body
            self._send_json(HTTPStatus.REQUEST_TIMEOUT, {"error": f"no complete request within {self.timeout} s"})
            return
        except RequestTooLarge:
            body = b""
        if len(body) != length:  # the client closed early: a cut body is not taken in part
            return
        crowded = too_many_records(body)
        if crowded is not None:  # 413, like a body too large: the client sheds reports and retries
            self.server.store.report_bad(BadInput.PUSH_TOO_LARGE, crowded)
            self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": crowded})
            return
        try:
            origin = Origin.from_headers(self.headers.get(PUSH_REPORTER_HEADER), self.headers.get(PUSH_SEQUENCE_HEADER))
        except ValueError as e:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            return
        try:
            accepted, resent = ingest_payload(self.server.store, body, self.server.journal, origin)
        except RecordError as e:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(e), "kind": e.kind.value})
            return
        self._send_json(HTTPStatus.OK, {"accepted": accepted, "resent": resent})

    def _discard(self, length: int) -> None:
        """Read a rejected body in small pieces, so the client gets the answer, not a reset."""
        remaining = min(length, _DISCARD_LIMIT)
        self._reader.budget = remaining + io.DEFAULT_BUFFER_SIZE
        while remaining > 0:
            try:
                chunk = self.rfile.read(min(remaining, 65536))
            except (TimeoutError, RequestTooLarge):  # the client stalled: answer anyway (if time is left)
                break
            if not chunk:
                break
            remaining -= len(chunk)

"""`plateau-sidecar`: wire the sources, the store and the HTTP endpoints; shut down without loss."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from functools import partial
from types import FrameType

from .collector import Exposition, StoreCollector
from .config import Config, load_config
from .follow import DRAIN_SECONDS, FileFollower
from .journal import PushJournal, line_bound
from .records import jsonl_sink, pattern_sink
from .server import SidecarServer
from .spec import SpecFollower
from .store import MetricStore

log = logging.getLogger("plateau_sidecar")


class Sidecar:
    """The running sidecar; `start()` returns once it serves, `stop()` drains and closes."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = MetricStore(config.trainingjob, config.metric_names, config.max_metrics)
        exposition = Exposition(self.store)
        self.collector = exposition.collector
        server = partial(
            SidecarServer,
            store=self.store,
            max_inflight=config.max_inflight,
            max_body_bytes=config.max_push_bytes,
            health=self.dead_readers,
        )
        self.servers = [server(config.metrics_addr, exposition=exposition)]
        self.journal = PushJournal(config.push_journal, config.max_journal_bytes, line_bound(config.max_push_bytes)) \
            if config.push_addr is not None and config.push_journal else None
        if config.push_addr is not None:
            self.servers.append(server(config.push_addr, push=True, journal=self.journal.append if self.journal else None))
        follower = partial(
            FileFollower, store=self.store, max_line_bytes=config.max_line_bytes, poll_interval=config.poll_interval
        )
        self.followers: list[FileFollower] = []
        self._abandon = threading.Event()  # set when a shutdown has drained the files long enough
        if config.metrics_file:
            self.followers.append(follower(config.metrics_file, jsonl_sink(self.store)))
        if config.stdout_file and config.stdout_pattern:
            self.followers.append(follower(config.stdout_file, pattern_sink(self.store, config.stdout_pattern, abandon=self._abandon)))
        self.spec = SpecFollower(config.spec_file, self.store) if config.spec_file else None
        self._stop_following = threading.Event()
        self._following: list[threading.Thread] = []
        self._spec_thread: threading.Thread | None = None

    def start(self) -> None:
        if self.spec is not None:  # the spec first: the track folds reports as they come, and the
            self.spec.poll()       # metrics it reads pass the allow-list (the journal's too)
        if self.journal is not None:  # a restarted container: what was pushed before, next
            taken = self.journal.replay(jsonl_sink(self.store, pushes=True))
            if taken:
                log.info("took in %d journal lines again from %s", taken, self.journal.path)
        if self.spec is not None:
            self._spec_thread = threading.Thread(target=self.spec.run, args=(self._stop_following,), name="follow-spec",
                                                 daemon=True)
            self._spec_thread.start()
        for server in self.servers:
            server.start()
            log.info("serving %s on %s", "/push" if server.push else "/metrics", server.url)
        for follower in self.followers:
            thread = threading.Thread(target=follower.run, args=(self._stop_following,), name=f"follow-{follower.path}")
            thread.start()
            self._following.append(thread)

    def stop(self, linger_seconds: float = 0.0) -> None:
        """Read the files to their end, give Prometheus up to `linger_seconds` to scrape what
        arrived since its last scrape, then close."""
        self._stop_following.set()
        for server in self.servers:
            if server.push:  # no more pushes (refused at once): once those under way are in, the store is final
                server.close()
        deadline = time.monotonic() + DRAIN_SECONDS + 1.0
        for thread in self._following:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._abandon.set()  # a reader still busy (matching a long backlog) stops after its current line
        for thread in self._following:
            thread.join()
        _wait_for_scrape(self.collector, linger_seconds)
        for server in self.servers:
            if not server.push:
                server.close()

    def dead_readers(self) -> str | None:
        """For /healthz: the followed files (and spec file) whose reader thread died, or None."""
        if self._stop_following.is_set():
            return None  # shutting down: the readers end on purpose
        dead = [
            f"{follower.path} ({follower.failure!r:.100})"
            for follower, thread in zip(self.followers, self._following, strict=False)
            if not thread.is_alive()
        ]
        if self.spec is not None and self._spec_thread is not None and not self._spec_thread.is_alive():
            dead.append(f"{self.spec.path} (the metric stop spec)")
        return f"reader thread died: {', '.join(dead)}" if dead else None


def _wait_for_scrape(collector: StoreCollector, seconds: float) -> None:
    if collector.scraped_generation < 0:
        return  # nothing scrapes this sidecar (e.g. a local run): do not wait for it
    deadline = time.monotonic() + seconds
    while collector.scraped_generation < collector.store.generation and time.monotonic() < deadline:
        time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(argv)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sidecar = Sidecar(config)
    except OSError as e:  # typically an address already in use
        log.error("cannot start: %s", e)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)  # a second signal: leave without lingering
        log.info("received %s; draining", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sidecar.start()
    except OSError as e:  # e.g. a push journal that cannot be read
        log.error("cannot start: %s", e)
        return 1
    while not stop.wait(1.0):  # a timed wait, so signal handlers run promptly
        pass
    sidecar.stop(config.linger_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

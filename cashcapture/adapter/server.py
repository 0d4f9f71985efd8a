"""The asyncio TCP server: listeners, connections, shutdown, worker processes.

Each connection carries any number of messages, one answered at a time in
arrival order. A connection silent for ``idle_timeout`` is closed. A frame
that cannot be read is answered with a reject when a request header can be
read from it, and the connection is closed (the stream is out of step).
On SIGTERM the listeners close, idle connections are dropped, claims in
flight finish and are answered, and the group committer drains.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

from cashcapture.adapter import framing, logs
from cashcapture.adapter.config import Config, Listener
from cashcapture.adapter.metrics import Metrics
from cashcapture.adapter.router import Router
from cashcapture.core import drugs
from cashcapture.core.store import GroupCommitter, make_engine, upgrade

log = logging.getLogger("cashcapture.adapter.server")
REFUSED_LOG_EVERY = 10.0  # seconds between two "connection_limit" lines


class Connection:
    """One client connection: read, decode frames, answer each in turn."""

    def __init__(self, server: AdapterServer, listener: Listener, reader, writer) -> None:
        self.server = server
        self.listener = listener
        self.reader: asyncio.StreamReader = reader
        self.writer: asyncio.StreamWriter = writer
        self.decoder = framing.decoder(listener.framing, server.cfg.max_message_size)
        self.busy = False
        self.idle = False
        self.deadline = 0.0
        self.watchdog: asyncio.TimerHandle | None = None
        self.frame_started: float | None = None  # first byte of the frame in hand

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        idle = self.server.cfg.idle_timeout
        # One watchdog per connection, re-armed lazily: no timer per read.
        self.deadline = loop.time() + idle
        self.watchdog = loop.call_at(self.deadline, self._watch, loop, idle)
        try:
            while not self.server.draining:
                if not await self._answer_pending():
                    return
                if self.server.draining or self.idle:
                    return
                chunk = await self.reader.read(65536)
                if not chunk:
                    return
                now = loop.time()
                self.deadline = now + idle
                if self.frame_started is None:
                    self.frame_started = now
                elif now - self.frame_started > self.server.cfg.frame_timeout:
                    # a frame trickling in (a byte a second) holds a slot: it must complete
                    logs.event(log, "frame_timeout", logging.WARNING, framing=self.listener.framing)
                    self.server.metrics.frames_dropped.labels("frame_timeout").inc()
                    return
                self.decoder.feed(chunk)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if self.watchdog is not None:
                self.watchdog.cancel()
            self.writer.close()

    def _watch(self, loop: asyncio.AbstractEventLoop, idle: float) -> None:
        """Close the connection once nothing came for ``idle`` seconds and nothing is in hand."""
        now = loop.time()
        if self.busy:
            self.deadline = now + idle
        if now < self.deadline:
            self.watchdog = loop.call_at(self.deadline, self._watch, loop, idle)
            return
        self.idle = True
        logs.event(log, "idle_timeout", framing=self.listener.framing)
        self.writer.close()  # the pending read then sees end of stream

    async def _answer_pending(self) -> bool:
        """Answer every complete frame received so far; False when the connection must end."""
        while True:
            frame = self.decoder.next_frame()
            if frame is None:
                if not self.decoder.pending:
                    self.frame_started = None  # nothing half-received: the clock stops
                return True
            self.busy = True
            try:
                if isinstance(frame, framing.FrameError):
                    self.server.metrics.frame_errors.labels(self.listener.framing).inc()
                    logs.event(
                        log, "frame_error", logging.WARNING,
                        framing=self.listener.framing, reason=frame.reason,
                    )  # fmt: skip
                    if frame.payload is not None:
                        reply = await self.server.router.handle(frame.payload, payload_only=True)
                        if reply.data is not None:
                            await self._send(reply.data)
                    return False
                reply = await self.server.router.handle(frame)
                if reply.data is None:
                    return False
                await self._send(reply.data)
            finally:
                self.busy = False

    async def _send(self, data: bytes) -> None:
        self.writer.write(framing.encode(self.listener.framing, data))
        await self.writer.drain()
        self.deadline = asyncio.get_running_loop().time() + self.server.cfg.idle_timeout


class AdapterServer:
    """Listeners + router + group committer of one process."""

    def __init__(
        self,
        cfg: Config,
        schedule_of: Callable[[str], str | None],
        *,
        metrics: Metrics | None = None,
        reuse_port: bool = False,
        worker: int = 0,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.engine = make_engine(cfg.db)
        self.committer = GroupCommitter(self.engine, max_batch=cfg.commit_max_batch).start()
        self.router = Router(cfg, self.committer, schedule_of, self.metrics)
        self.reuse_port = reuse_port
        self.worker = worker
        self.servers: list[asyncio.Server] = []
        self.connections: set[Connection] = set()
        self.refused = 0  # connections over max_connections since the last log line
        self.refused_logged = float("-inf")
        self.draining = False
        self.stopped = asyncio.Event()

    @property
    def ports(self) -> list[int]:
        return [s.sockets[0].getsockname()[1] for s in self.servers]

    def reload_directory(self) -> None:
        """SIGHUP: read the drug directory again (after `drugs import`), and the pharmacies
        (a `pharmacy register` since), without a restart. A directory file that cannot be
        read leaves the one in use in place, said in the log."""
        try:
            schedule_of = schedule_factory(self.cfg)
        except (OSError, ValueError) as exc:
            logs.event(log, "directory_not_reloaded", logging.ERROR, error=str(exc))
            return
        self.router.reload(schedule_of)
        logs.event(log, "directory_reloaded", worker=self.worker)

    async def start(self) -> None:
        await self.router.start()  # the capture spool is replayed before the first claim
        for listener in self.cfg.listeners:
            server = await asyncio.start_server(
                functools.partial(self._accept, listener),
                listener.host,
                listener.port,
                reuse_port=self.reuse_port or None,
                backlog=1024,
            )
            self.servers.append(server)
            logs.event(
                log, "listening", host=listener.host,
                port=server.sockets[0].getsockname()[1], framing=listener.framing,
                worker=self.worker, pid=os.getpid(),
            )  # fmt: skip

    async def _accept(self, listener: Listener, reader, writer) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(self, listener, reader, writer)
        if self.draining:
            writer.close()
            return
        if len(self.connections) >= self.cfg.max_connections:
            writer.close()
            self._refuse_later()
            return
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    def _refuse_later(self) -> None:
        """Count a refused connection; log them once per REFUSED_LOG_EVERY seconds."""
        self.refused += 1
        now = time.monotonic()
        if now - self.refused_logged >= REFUSED_LOG_EVERY:
            logs.event(
                log, "connection_limit", logging.WARNING,
                max_connections=self.cfg.max_connections, refused=self.refused,
            )  # fmt: skip
            self.refused, self.refused_logged = 0, now

    async def shutdown(self) -> None:
        """Stop listening, drop idle connections, let claims in flight finish."""
        if self.draining:
            return
        self.draining = True
        logs.event(log, "draining", in_flight=sum(c.busy for c in self.connections))
        for s in self.servers:
            s.close()
        for conn in list(self.connections):
            if not conn.busy:
                conn.writer.close()
        deadline = asyncio.get_running_loop().time() + self.cfg.shutdown_grace
        while any(c.busy for c in self.connections):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        await asyncio.to_thread(self.committer.close)
        self.router.close()
        self.engine.dispose()
        logs.event(log, "stopped", worker=self.worker)
        self.stopped.set()


async def run(
    cfg: Config,
    schedule_of: Callable[[str], str | None],
    *,
    reuse_port: bool = False,
    worker: int = 0,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    metrics = Metrics()
    if cfg.metrics_port:
        metrics.serve(cfg.metrics_port + worker)
    server = AdapterServer(cfg, schedule_of, metrics=metrics, reuse_port=reuse_port, worker=worker)
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.shutdown()))
    loop.add_signal_handler(signal.SIGHUP, server.reload_directory)
    await server.stopped.wait()


def schedule_factory(cfg: Config) -> Callable[[str], str | None]:
    """The directory's answer for an NDC: CII..CV, None (not controlled) or
    `drugs.UNKNOWN`; from the configured directory file, else the shipped one."""
    return drugs.directory(cfg.drug_list, cfg.state).schedule_of


PR_SET_PDEATHSIG = 1  # prctl(2) option: a signal for this process when its parent dies


def _die_with_parent(parent: int) -> None:
    """A worker gets SIGTERM (a graceful stop) when its parent dies, even by SIGKILL,
    which leaves the parent no chance to forward a signal. Linux only; elsewhere a
    no-op."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(cfg: Config, worker: int, parent: int) -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until `run` can reload (default: die)
    _die_with_parent(parent)
    logs.setup(cfg.log_level, sys.stdout)  # every worker logs where `serve` itself does
    asyncio.run(run(cfg, schedule_factory(cfg), reuse_port=True, worker=worker))


def serve(cfg: Config) -> None:
    """Run the adapter: in this process, or as ``cfg.workers`` processes sharing the ports.

    Migrations run once here, before any worker starts. With several workers
    every listener needs a fixed port (SO_REUSEPORT spreads connections). SIGHUP is
    ignored until the directory can be reloaded: its default action would end the
    process (workers inherit the ignoring, and set it again themselves).
    """
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    upgrade(cfg.db)
    if cfg.workers == 1:
        asyncio.run(run(cfg, schedule_factory(cfg)))
        return
    if any(li.port == 0 for li in cfg.listeners):
        raise ValueError("several workers need fixed listener ports (port 0 given)")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker_main, args=(cfg, k, os.getpid()), name=f"worker-{k}")
        for k in range(cfg.workers)
    ]
    for p in procs:
        p.start()
    logs.event(log, "workers_started", workers=cfg.workers, pid=os.getpid())

    def forward(signum, _frame) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGHUP if signum == signal.SIGHUP else signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for p in procs:
        p.join()

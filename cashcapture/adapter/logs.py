"""Structured logs: one JSON object per line, built only from whitelisted keys.

Callers pass ids, codes, counts and timings as keyword fields; anything not in
ALLOWED is dropped, so patient data cannot slip into a log line by accident.

Lines are written in batches: on an event loop, the lines of one turn of the
loop go out in one write at the start of the next turn (one system call per
batch of claims, not per claim); elsewhere at once. Exit (logging.shutdown,
run at exit, flushes every handler) writes what is held, so a graceful
shutdown loses no line. `event` skips logging's record machinery when the
line would reach only `setup`'s handler anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

ALLOWED = frozenset(
    {
        "event",
        "claim_id",
        "pharmacy",
        "route",
        "bin",
        "pcn",
        "transaction_code",
        "transactions",
        "status",
        "reject_codes",
        "latency_ms",
        "payer",
        "reason",
        "offset",
        "host",
        "port",
        "framing",
        "worker",
        "pid",
        "workers",
        "db",
        "peer",
        "connections",
        "captured",
        "unclassified",
        "error",
        "in_flight",
    }
)
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _line(ts: float, level: int, logger: str, name: str, fields: dict) -> dict:
    out = {
        "ts": round(ts, 3),
        "level": logging.getLevelName(level).lower(),
        "logger": logger,
        "event": name,
    }
    out.update({k: v for k, v in fields.items() if k in ALLOWED and v is not None})
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # our events are plain names; other libraries' messages keep only
        # their template, never the arguments (which may quote values)
        name = record.getMessage() if record.name.startswith("cashcapture") else str(record.msg)
        fields = getattr(record, "fields", None) or {}
        out = _line(record.created, record.levelno, record.name, name, fields)
        if record.exc_info and record.exc_info[0] is not None:
            # the exception type only: messages of driver errors can quote values
            out["error"] = record.exc_info[0].__name__
        return _encode(out)


class JsonLines(logging.Handler):
    """JSON lines to a stream, written a batch at a time (see the module docstring)."""

    def __init__(self, stream) -> None:
        super().__init__()
        self.stream = stream
        self.setFormatter(JsonFormatter())
        self._held: list[str] = []
        self._scheduled = False  # a flush waits on an event loop

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write(line)

    def write(self, line: str) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._held.append(line + "\n")
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop in this thread: write now
                self.flush()
                return
            if not self._scheduled:
                self._scheduled = True
                loop.call_soon(self.flush)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._scheduled = False
            held, self._held = self._held, []
            if not held:
                return
            try:
                self.stream.write("".join(held))
                self.stream.flush()
            except Exception:  # a closed or broken stream: nowhere left to say so
                pass


_handler: JsonLines | None = None


def setup(level: str = "INFO", stream=None) -> None:
    """Send every log record to ``stream`` (stderr) as JSON lines."""
    global _handler
    root = logging.getLogger()
    for h in list(root.handlers):
        h.flush()
        root.removeHandler(h)
    _handler = JsonLines(stream or sys.stderr)
    root.addHandler(_handler)
    root.setLevel(level.upper())
    # Only a message's format string is logged (its arguments could carry values),
    # which turns chatty libraries' INFO lines into noise such as "Running %s".
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


_QUIET = ("alembic", "asyncssh")


def _direct(logger: logging.Logger, level: int) -> JsonLines | None:
    """`setup`'s handler when it is the only place a record of ``logger`` would go."""
    handler = _handler
    if handler is None or logger.disabled or logger.filters:
        return None
    node: logging.Logger = logger
    while node.parent is not None:  # up to the root
        if node.handlers or not node.propagate:
            return None
        node = node.parent
    handlers = node.handlers
    if len(handlers) != 1 or handlers[0] is not handler or handler.filters:
        return None
    return handler if level >= handler.level else None


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields) -> None:
    if not logger.isEnabledFor(level):
        return
    handler = _direct(logger, level)
    if handler is None:
        logger.log(level, name, extra={"fields": fields})
        return
    handler.write(_encode(_line(time.time(), level, logger.name, name, fields)))


def ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)

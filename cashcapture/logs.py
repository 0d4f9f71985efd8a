"""Structured logs: one JSON object per line, built only from whitelisted keys.

Callers pass ids, codes, counts and timings as keyword fields; anything not in
ALLOWED is dropped, so patient data cannot slip into a log line by accident.
"""

from __future__ import annotations

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
        "error",
        "in_flight",
    }
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            # our events are plain names; other libraries' messages keep only
            # their template, never the arguments (which may quote values)
            "event": record.getMessage()
            if record.name.startswith("cashcapture")
            else str(record.msg),
        }
        fields = getattr(record, "fields", None) or {}
        out.update({k: v for k, v in fields.items() if k in ALLOWED and v is not None})
        if record.exc_info and record.exc_info[0] is not None:
            # the exception type only: messages of driver errors can quote values
            out["error"] = record.exc_info[0].__name__
        return json.dumps(out, separators=(",", ":"), default=str)


def setup(level: str = "INFO", stream=None) -> None:
    """Send every cashcapture log record to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


def ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)

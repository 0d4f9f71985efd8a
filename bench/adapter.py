"""Adapter throughput and latency with durable capture, SQLite and PostgreSQL side by side.

    .venv/bin/python bench/adapter.py [--connections 32] [--seconds 10] [--workers 1]
                                      [--malformed 0.01]

Starts `cashcapture serve` as a real process, then a load generator in its own
process: N connections over loopback, each sending cash B1 claims of a
controlled drug back to back (a new Rx number each, so every claim is a new
fill committed before its answer). Prints claims/s and p50/p99 latency per
database, and checks that every paid claim is in the store.

The generator is lean so that it does not starve the server of the 2 cores
they share: one claim built once, each message that template with its Rx
number spliced in (same length, so the frame header is reused), raw asyncio
streams reading the STX frame by its length. It reports the CPU it used per
claim, and the server's (from /proc, the whole process tree), so a run on a
busy machine can still be read: claims/s = CPU available / CPU per claim.
Goal: >= 2,000 claims/s sustained with p99 < 20 ms on a 2-core machine.

``--malformed SHARE`` (e.g. 0.01) makes that share of each connection's claims
malformed, evenly spread and rotating over the kinds issue 13 names (`MALFORMED`):
each must be answered rejected, never paid and never 99, and the rest still
paid and stored; claims/s counts every answer. Run it beside a run without to
see what a share of bad claims costs the good ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PG = os.environ.get("CASHCAPTURE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


TEMPLATE_RX = 100_000_000_001  # 12 digits, the width of 402-D2


def _with(request, seg_id: str, code: str, value: str, transaction: bool = True):
    """The request with one field of a segment set to a raw wire value."""
    from ncpdp import Segment

    segments = request.transactions[0] if transaction else request.segments
    for i, seg in enumerate(segments):
        if seg.id == seg_id:
            segments[i] = Segment(seg_id, [(c, value if c == code else v) for c, v in seg.fields])
    return request


def _malformed() -> list[tuple[str, bytes]]:
    """Malformed cash claims of a controlled drug, one per kind issue 13 names."""
    from _adapter_helpers import b1, build

    lost = build(b1(rx=TEMPLATE_RX))  # a lost separator: the pricing segment inside the claim's
    at = lost.index(b"\x1e\x1cAM11")
    return [
        ("superscript digit in the Rx number", build(_with(b1(), "07", "D2", "12345\xb967"))),
        ("segment separator missing", lost[:at] + lost[at + 1 :]),
        ("'*' in the patient's name", build(_with(b1(), "01", "CB", "HOLL*WAY", False))),
        ("date of service a year ahead", _ahead(build(b1()))),
        (
            "SSN the state refuses",
            build(_with(_with(b1(), "01", "CX", "01", False), "01", "CY", "000123456", False)),
        ),
    ]


def _ahead(message: bytes) -> bytes:
    """The claim with its header date of service a year after today."""
    import datetime as dt

    from _adapter_helpers import fx

    ahead = (dt.date.today() + dt.timedelta(days=365)).strftime("%Y%m%d").encode()
    return message.replace(fx.DATE_OF_SERVICE.encode(), ahead, 1)


class Frames:
    """Pre-built STX frames of one cash B1, each with its own Rx number; with a
    ``malformed`` share, every (1/share)th frame is a malformed claim instead."""

    def __init__(self, malformed: float = 0.0) -> None:
        from _adapter_helpers import b1, build

        from cashcapture.adapter import framing

        message = build(b1(rx=TEMPLATE_RX))
        frame = framing.encode("stx", message)
        marker = b"D2" + str(TEMPLATE_RX).encode()
        if frame.count(marker) != 1:
            raise AssertionError("the template's Rx number is not unique in it")
        at = frame.index(marker) + 2
        self.head, self.tail = frame[:at], frame[at + 12 :]
        self.every = round(1 / malformed) if malformed > 0 else 0
        self.bad = [framing.encode("stx", m) for _, m in _malformed()]

    def __call__(self, rx: int) -> bytes:
        return self.head + b"%012d" % rx + self.tail

    def stream(self, first_rx: int, count: int):
        """(frame, is_malformed) for ``count`` claims from ``first_rx`` on."""
        for i in range(count):
            if self.every and i % self.every == self.every - 1:
                yield self.bad[(i // self.every) % len(self.bad)], True
            else:
                yield self(first_rx + i), False


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


async def _connection(
    port: int,
    frames,
    until: float,
    lat: list[float] | None,
    host: str = "127.0.0.1",
    rejected: list[int] | None = None,
) -> int:
    """Claims answered on one connection. ``frames`` yields frames, or (frame, malformed)
    pairs: a malformed claim must be rejected (not 99), the others paid; ``rejected``
    gets one entry per malformed claim answered."""
    from cashcapture.adapter.client import AsyncClient

    client = await AsyncClient.connect(host, port, "stx")
    done = 0
    clock = time.perf_counter
    for item in frames:
        frame, bad = item if isinstance(item, tuple) else (item, False)
        t0 = clock()
        if t0 >= until:
            break
        client.send_raw(frame)  # built once up front (framing.encode)
        answer = await client.receive()
        if answer is None:
            raise AssertionError("the adapter closed the connection")
        if lat is not None:
            lat.append(clock() - t0)
        if bad:
            if b"\x1cANP" in answer or b"\x1cFB99" in answer:
                raise AssertionError("malformed claim paid or answered 99")
            if rejected is not None:
                rejected.append(1)
        elif b"\x1cANP" not in answer:
            raise AssertionError("claim not paid")
        done += 1
    client.close()
    return done


def run_figures(claims: int, elapsed: float, lat: list[float]) -> dict:
    """Claims, seconds, claims/s and p50/p99 latency (ms) of one timed run."""
    lat.sort()
    return {
        "claims": claims,
        "seconds": elapsed,
        "rate": claims / elapsed,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
    }


def _generator(
    port: int,
    server_pid: int,
    connections: int,
    seconds: float,
    warmup: float,
    out,
    malformed: float = 0.0,
) -> None:
    make = Frames(malformed)

    def frames(k: int, first: int):
        base = 1_000_000 * (k + 1) + first
        return make.stream(base, 1_000_000 - first)

    async def main():
        lat: list[float] = []
        bad_warm: list[int] = []
        bad: list[int] = []
        warm_until = time.perf_counter() + warmup
        warm = await asyncio.gather(  # warm-up: connections, caches, first batches
            *(
                _connection(port, frames(k, 0), warm_until, None, rejected=bad_warm)
                for k in range(connections)
            )
        )
        cpu0, server0 = time.process_time(), _proc_cpu(server_pid)
        start = time.perf_counter()
        counts = await asyncio.gather(
            *(
                _connection(port, frames(k, 500_000), start + seconds, lat, rejected=bad)
                for k in range(connections)
            )
        )
        elapsed = time.perf_counter() - start
        cpu = (time.process_time() - cpu0, _proc_cpu(server_pid) - server0)
        return sum(counts), sum(warm), elapsed, lat, cpu, len(bad), len(bad_warm)

    total, warm, elapsed, lat, (gen_cpu, server_cpu), bad, bad_warm = asyncio.run(main())
    out.put(
        {
            **run_figures(total, elapsed, lat),
            "malformed": bad,
            "paid_incl_warmup": total + warm - bad - bad_warm,
            "server_cpu_us": server_cpu / total * 1e6,
            "server_cores": server_cpu / elapsed,
            "generator_cpu_us": gen_cpu / total * 1e6,
            "load": os.getloadavg()[0],
        }
    )


def _pg_url() -> tuple[str, str]:
    import psycopg
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    info = make_url(PG).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{PG}?options={quote(f'-csearch_path={schema}')}", schema


def _drop_pg(schema: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    info = make_url(PG).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run_one(db_url: str, args, tmp: Path) -> dict:
    from _adapter_helpers import ServerProcess, free_port, register_pharmacy, write_config

    from cashcapture.core.store import Fill, make_engine, session_factory

    register_pharmacy(db_url)
    port = free_port()
    cfg = write_config(tmp, db_url, port)
    server = ServerProcess(cfg, tmp / "serve.log", "--workers", str(args.workers))
    try:
        server.wait_listening() if args.workers == 1 else time.sleep(4)
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        gen = ctx.Process(
            target=_generator,
            args=(
                port,
                server.proc.pid,
                args.connections,
                args.seconds,
                args.warmup,
                q,
                args.malformed,
            ),
        )
        gen.start()
        result = q.get(timeout=args.seconds + args.warmup + 120)
        gen.join()
    finally:
        server.stop(signal.SIGTERM)
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        from sqlalchemy import func, select

        result["fills_stored"] = s.scalar(select(func.count()).select_from(Fill))
    if result["fills_stored"] != result["paid_incl_warmup"]:
        raise AssertionError(f"paid claims and stored fills differ: {result}")
    engine.dispose()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--only", choices=["sqlite", "postgresql"])
    ap.add_argument(
        "--malformed", type=float, default=0.0, help="share of malformed claims (e.g. 0.01)"
    )
    args = ap.parse_args()
    results = {}
    for db in ("sqlite", "postgresql"):
        if args.only and db != args.only:
            continue
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            schema = None
            if db == "sqlite":
                url = f"sqlite:///{tmp / 'bench.db'}"
            else:
                url, schema = _pg_url()
            try:
                results[db] = r = run_one(url, args, tmp)
            finally:
                if schema:
                    _drop_pg(schema)
        print(
            f"{db:10s} {r['rate']:8.0f} claims/s  p50 {r['p50_ms']:6.2f} ms  "
            f"p99 {r['p99_ms']:6.2f} ms  ({r['claims']} claims in {r['seconds']:.1f}s, "
            f"{r['fills_stored']} fills stored incl. warm-up, {r['malformed']} malformed "
            f"answered rejected)\n"
            f"{'':10s} CPU per claim: server {r['server_cpu_us']:.0f} us "
            f"({r['server_cores']:.2f} cores busy), generator {r['generator_cpu_us']:.0f} us; "
            f"load average {r['load']:.1f}"
        )
    print(
        json.dumps(
            {
                "connections": args.connections,
                "workers": args.workers,
                "malformed_share": args.malformed,
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()

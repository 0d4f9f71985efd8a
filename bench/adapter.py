"""Adapter throughput and latency with durable capture, SQLite and PostgreSQL side by side.

    .venv/bin/python bench/adapter.py [--connections 32] [--seconds 10] [--workers 1]

Starts `cashcapture serve` as a real process, then a load generator in its own
process: N connections over loopback, each sending cash B1 claims of a
controlled drug back to back (a new Rx number each, so every claim is a new
fill committed before its answer). Prints claims/s and p50/p99 latency per
database, and checks that every paid claim is in the store.
Goal: >= 2,000 claims/s sustained with p99 < 20 ms on a 2-core machine.
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


def _messages(base: int, count: int) -> list[bytes]:
    from _adapter_helpers import b1, build

    return [build(b1(rx=base + i)) for i in range(count)]


async def _connection(port: int, msgs: list[bytes], until: float, lat: list[float]) -> int:
    from cashcapture import framing

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    dec = framing.decoder("stx", 65535)
    done = 0
    for m in msgs:
        if time.perf_counter() >= until:
            break
        t0 = time.perf_counter()
        writer.write(framing.encode("stx", m))
        while (frame := dec.next_frame()) is None:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("server closed")
            dec.feed(chunk)
        lat.append(time.perf_counter() - t0)
        if b"\x1cANP" not in frame:
            raise AssertionError("claim not paid")
        done += 1
    writer.close()
    return done


def _generator(port: int, connections: int, seconds: float, warmup: float, out) -> None:
    per = int(6000 * (seconds + warmup) / connections) + 50
    msgs = [_messages(1_000_000 * (k + 1), per) for k in range(connections)]

    async def main():
        lat: list[float] = []
        warm_until = time.perf_counter() + warmup
        await asyncio.gather(  # warm-up: connections, caches, first batches
            *(_connection(port, msgs[k][:20], warm_until, []) for k in range(connections))
        )
        msgs2 = [m[20:] for m in msgs]
        start = time.perf_counter()
        counts = await asyncio.gather(
            *(_connection(port, msgs2[k], start + seconds, lat) for k in range(connections))
        )
        elapsed = time.perf_counter() - start
        return sum(counts), elapsed, lat

    total, elapsed, lat = asyncio.run(main())
    lat.sort()
    out.put(
        {
            "claims": total,
            "seconds": elapsed,
            "rate": total / elapsed,
            "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
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

    from cashcapture.store import Fill, make_engine, session_factory

    register_pharmacy(db_url)
    port = free_port()
    cfg = write_config(tmp, db_url, port)
    server = ServerProcess(cfg, tmp / "serve.log", "--workers", str(args.workers))
    try:
        server.wait_listening() if args.workers == 1 else time.sleep(4)
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        gen = ctx.Process(
            target=_generator, args=(port, args.connections, args.seconds, args.warmup, q)
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
    engine.dispose()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--only", choices=["sqlite", "postgresql"])
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
            f"{r['fills_stored']} fills stored incl. warm-up)"
        )
    print(json.dumps({"connections": args.connections, "workers": args.workers, **results}))


if __name__ == "__main__":
    main()

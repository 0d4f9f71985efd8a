"""Scale out: several `cashcapture serve` processes against one PostgreSQL.

    .venv/bin/python bench/scaleout.py [--processes 1,2,4] [--connections 32] [--seconds 10]

Each step starts N separate `serve` processes (not `--workers`: separate processes as on
separate hosts), half listening on 127.0.0.1 and half on 127.0.0.2 (two hosts' worth of
ports on this machine's loopback), all writing to one PostgreSQL schema. One load
generator process spreads its connections over them and sends cash B1 claims of a
controlled drug (a new Rx number each: every paid claim is a fill committed before its
answer). Per step it prints claims/s, p50/p99, and PostgreSQL's own count of commits
(pg_stat_database.xact_commit) per second and claims per commit, which shows when the
database's commit rate, not the processes, becomes the limit. The fill identity stays
the database's UNIQUE key: the bench checks every paid claim is stored exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from adapter import (  # noqa: E402  (bench/adapter.py: the same lean client)
    ROOT,
    Frames,
    _connection,
    _drop_pg,
    _pg_url,
    _proc_cpu,
    run_figures,
)

sys.path.insert(0, str(ROOT / "tests"))
HOSTS = ("127.0.0.1", "127.0.0.2")


def _commits(db_url: str) -> int:
    import psycopg
    from sqlalchemy.engine import make_url

    info = make_url(db_url).set(drivername="postgresql", query={})
    with psycopg.connect(info.render_as_string(hide_password=False), autocommit=True) as c:
        row = c.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _generator(targets, pids, connections: int, seconds: float, warmup: float, out) -> None:
    make = Frames()

    def frames(k: int, first: int):
        base = 1_000_000 * (k + 1) + first
        return (make(base + i) for i in range(1_000_000 - first))

    async def spread(until: float, first: int, lat):
        return await asyncio.gather(
            *(
                _connection(
                    targets[k % len(targets)][1],
                    frames(k, first),
                    until,
                    lat,
                    host=targets[k % len(targets)][0],
                )
                for k in range(connections)
            )
        )

    async def main():
        lat: list[float] = []
        warm = await spread(time.perf_counter() + warmup, 0, None)
        cpu0 = sum(_proc_cpu(p) for p in pids)
        start = time.perf_counter()
        counts = await spread(start + seconds, 500_000, lat)
        elapsed = time.perf_counter() - start
        return sum(counts), sum(warm), elapsed, lat, sum(_proc_cpu(p) for p in pids) - cpu0

    total, warm, elapsed, lat, cpu = asyncio.run(main())
    out.put(
        {
            **run_figures(total, elapsed, lat),
            "paid_incl_warmup": total + warm,
            "server_cores": cpu / elapsed,
        }
    )


def step(n: int, args, tmp: Path) -> dict:
    from _adapter_helpers import ServerProcess, free_port, register_pharmacy, write_config
    from sqlalchemy import func, select

    from cashcapture.core.store import Fill, make_engine, session_factory

    db_url, schema = _pg_url()
    servers = []
    try:
        register_pharmacy(db_url)
        ports = []
        for i in range(n):
            d = tmp / f"p{n}-{i}"
            d.mkdir()
            port = free_port()
            cfg = write_config(d, db_url, port)
            host = HOSTS[i % len(HOSTS)]
            servers.append(ServerProcess(cfg, d / "serve.log", "--host", host))
            ports.append((host, port))
        for s in servers:
            s.wait_listening()
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        pids = [s.proc.pid for s in servers]
        commits0 = _commits(db_url)
        gen = ctx.Process(
            target=_generator, args=(ports, pids, args.connections, args.seconds, args.warmup, q)
        )
        gen.start()
        result = q.get(timeout=args.seconds + args.warmup + 120)
        gen.join()
        commits = _commits(db_url) - commits0
    finally:
        for s in servers:
            s.stop(signal.SIGTERM)
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        stored = s.scalar(select(func.count()).select_from(Fill))
    engine.dispose()
    _drop_pg(schema)
    if stored != result["paid_incl_warmup"]:
        raise AssertionError(f"paid claims {result['paid_incl_warmup']} != stored fills {stored}")
    # commits over warm-up and run (the database counts them all); per claim over the same
    result["commits_per_s"] = commits / (result["seconds"] + args.warmup)
    result["claims_per_commit"] = result["paid_incl_warmup"] / max(commits, 1)
    result["processes"] = n
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--processes", default="1,2,4")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    args = ap.parse_args()
    rows = []
    for n in (int(x) for x in args.processes.split(",")):
        with tempfile.TemporaryDirectory() as d:
            r = step(n, args, Path(d))
        rows.append(r)
        print(
            f"{n} process(es): {r['rate']:7.0f} claims/s  p50 {r['p50_ms']:6.2f} ms  "
            f"p99 {r['p99_ms']:6.2f} ms  PostgreSQL {r['commits_per_s']:6.0f} commits/s "
            f"({r['claims_per_commit']:.1f} claims per commit), "
            f"servers {r['server_cores']:.2f} cores"
        )
    print(json.dumps({"connections": args.connections, "steps": rows}))


if __name__ == "__main__":
    main()

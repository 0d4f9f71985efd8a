"""The Prometheus endpoint of `cashcapture serve` over real HTTP: claims by route and
status, the latency histogram, and no patient data in the metrics text."""

from __future__ import annotations

import signal
import time
import urllib.request

from _adapter_helpers import (
    PATIENT_PHI,
    Client,
    ServerProcess,
    b1,
    build,
    free_port,
    load,
    register_pharmacy,
    statuses,
    write_config,
)
from prometheus_client.parser import text_string_to_metric_families

from cashcapture.adapter import framing

DROPPED = ("cashcapture_frames_dropped_total", (("reason", "unreadable"),))


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_endpoint_counts_claims_without_patient_data(tmp_path, db_url):
    register_pharmacy(db_url)
    port, metrics_port = free_port(), free_port()
    cfg = write_config(tmp_path, db_url, port)
    cfg.write_text(
        cfg.read_text().replace("[adapter]\n", f"[adapter]\nmetrics_port = {metrics_port}\n")
    )
    server = ServerProcess(cfg, tmp_path / "serve.log")
    try:
        server.wait_listening()
        before = _samples(_scrape(metrics_port))
        assert ("cashcapture_claims_total", (("route", "cash"), ("status", "P"))) not in before
        with Client(port) as c:
            assert statuses(c.exchange(build(b1(rx=8801)))) == ["P"]
            assert statuses(c.exchange(build(b1(rx=8802)))) == ["P"]
            assert statuses(c.exchange(load("b1_insured.dat"))) == ["R"]  # no route here
        with Client(port) as c:  # a well-framed message that is no claim: closed, unanswered
            c.send_raw(framing.encode("stx", b"NOT A CLAIM AT ALL"))
            assert c.receive() is None
        deadline = time.monotonic() + 5
        while True:  # the counters move right after the answer is written
            text = _scrape(metrics_port)
            got = _samples(text)
            if got.get(("cashcapture_claim_latency_seconds_count", (("route", "cash"),))) == 2 and (
                got.get(DROPPED)
            ):
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert got[("cashcapture_claims_total", (("route", "cash"), ("status", "P")))] == 2
    assert got[("cashcapture_claims_total", (("route", "unrouted"), ("status", "R")))] == 1
    assert ("cashcapture_claims_total", (("route", "cash"), ("status", "R"))) not in got
    assert got[DROPPED] == 1  # the garbage frame is counted apart, never as a claim
    cash = (("route", "cash"),)
    assert got[("cashcapture_claim_latency_seconds_count", cash)] == 2
    assert 0 < got[("cashcapture_claim_latency_seconds_sum", cash)] < 10
    inf = ("cashcapture_claim_latency_seconds_bucket", (("le", "+Inf"), ("route", "cash")))
    assert got[inf] == 2
    for phi in PATIENT_PHI:
        assert phi not in text, f"patient data in the metrics: {phi}"

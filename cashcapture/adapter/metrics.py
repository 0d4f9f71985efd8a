"""Prometheus metrics of the adapter: counts, latency, upstream timeouts, capture failures.

Labels carry routes, statuses and payer routes only, never claim content.
Each worker process serves its own endpoint (metrics_port + worker index).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """One registry per adapter (tests build several in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.claims = Counter(
            "cashcapture_claims",
            "Claims answered, by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "cashcapture_claim_latency_seconds",
            "Time from frame received to response sent",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_timeouts = Counter(
            "cashcapture_upstream_timeouts",
            "Insured claims the payer did not answer in time",
            ["payer"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "cashcapture_upstream_errors",
            "Insured claims the payer could not be reached for",
            ["payer", "reject_code"],
            registry=r,
        )
        self.capture_failures = Counter(
            "cashcapture_capture_failures",
            "Captures the store could not commit",
            ["route"],
            registry=r,
        )
        self.unclassified = Counter(
            "cashcapture_unclassified_captures",
            "Fills captured for an NDC the drug directory does not hold (reported once classified)",
            ["route"],
            registry=r,
        )
        self.frame_errors = Counter(
            "cashcapture_frame_errors",
            "Frames that could not be read",
            ["framing"],
            registry=r,
        )
        self.frames_dropped = Counter(
            "cashcapture_frames_dropped",
            "Messages closed without an answer (unreadable, or a response sent to us): not claims",
            ["reason"],
            registry=r,
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose /metrics over HTTP (a daemon thread)."""
        start_http_server(port, addr=host, registry=self.registry)

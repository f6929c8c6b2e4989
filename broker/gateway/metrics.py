"""A small Prometheus registry: counters and histograms with labels, text format 0.0.4.

Our own rather than ``prometheus_client`` because the gateway needs four families and a
renderer, not a dependency with process-global state. Values are per process (one
gunicorn worker each); Prometheus sums them across scrape targets. Label values are
escaped per the exposition format, and label sets are bounded by what the gateway feeds
in (route names, outcomes, reason codes, configured datasets), never by client input.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LE_INF = 'le="+Inf"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Counter:
    """A monotonically increasing value per label set."""

    name: str
    help: str
    labelnames: tuple[str, ...] = ()
    _values: dict[tuple[str, ...], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        lines += [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in items]
        return lines


@dataclass
class Histogram:
    """Observations in cumulative buckets, with sum and count per label set."""

    name: str
    help: str
    labelnames: tuple[str, ...] = ()
    buckets: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    _values: dict[tuple[str, ...], list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            row = self._values.get(labels)
            if row is None:
                row = self._values[labels] = [0.0] * (len(self.buckets) + 2)
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    row[i] += 1
            row[-2] += value
            row[-1] += 1

    def count(self, *labels: str) -> float:
        with self._lock:
            row = self._values.get(labels)
            return row[-1] if row else 0.0

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._values.items())
        for key, row in items:
            for bound, n in zip(self.buckets, row, strict=False):
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {_number(n)}")
            lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, _LE_INF)} {_number(row[-1])}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_number(row[-2])}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, key)} {_number(row[-1])}")
        return lines


class GatewayMetrics:
    """The gateway's metric families. Other parts may add gauges via :meth:`add_gauge`."""

    def __init__(self) -> None:
        self.requests = Counter(
            "gateway_requests_total", "Gateway requests by route, method and status.", ("route", "method", "status")
        )
        self.decisions = Counter(
            "gateway_decisions_total", "Access decisions by outcome and reason.", ("outcome", "reason")
        )
        self.bytes_streamed = Counter(
            "gateway_bytes_streamed_total", "Body bytes the gateway itself sent, by dataset.", ("dataset",)
        )
        self.transfers = Counter(
            "gateway_transfers_total", "Streamed bodies by result (complete or broken).", ("result",)
        )
        self.htsget_tickets = Counter(
            "gateway_htsget_tickets_total",
            "htsget tickets issued by endpoint, format and class.",
            ("endpoint", "format", "class"),
        )
        self.reencryptions = Counter(
            "gateway_crypt4gh_reencryptions_total",
            "Crypt4GH headers re-encrypted to a researcher's key, by dataset.",
            ("dataset",),
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_latency_seconds", "Time from request to upstream response headers, by store.", ("store",)
        )
        self._gauges: list[tuple[str, str, Callable[[], float]]] = []

    def add_gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Expose a value read at scrape time (e.g. the verifier's cache hit ratio)."""
        self._gauges.append((name, help_text, read))

    def render(self) -> str:
        lines: list[str] = []
        families = (
            self.requests,
            self.decisions,
            self.bytes_streamed,
            self.transfers,
            self.htsget_tickets,
            self.reencryptions,
            self.upstream_latency,
        )
        for family in families:
            lines += family.render()
        for name, help_text, read in self._gauges:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {_number(read())}"]
        return "\n".join(lines) + "\n"

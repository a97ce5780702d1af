"""Timing figures: latencies of one measurement and the rate it sustained, and the printed table."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of `values` (seconds in, seconds out); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Figure:
    """One measurement: per-call latencies (s), how many ran, over how long, and any failures."""
    name: str
    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    failures: int = 0
    note: str = ""
    cpu_s: float = float("nan")          # CPU the orchestrator (supervisor + its MCP servers) spent meanwhile
    client_cpu_s: float = float("nan")   # CPU the bench's own callers spent meanwhile

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s else float("nan")


def cpu_per_op_ms(figure: Figure) -> tuple[float, float]:
    """(orchestrator, bench client) CPU milliseconds per successful operation of `figure`."""
    done = len(figure.latencies) + figure.failures
    return (figure.cpu_s / done * 1000, figure.client_cpu_s / done * 1000) if done else (float("nan"),) * 2


class Stopwatch:
    """`with Stopwatch() as sw: ...` then `sw.elapsed` (seconds, monotonic)."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.elapsed = time.perf_counter() - self.start


def table(figures: list[Figure]) -> str:
    """The figures as a fixed-width table."""
    lines = [f"{'measurement':<44} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'rate/s':>9}  notes",
             "-" * 90]
    for fig in figures:
        notes = "; ".join(x for x in (fig.note, f"{fig.failures} FAILED" if fig.failures else "") if x)
        lines.append(f"{fig.name:<44} {len(fig.latencies):>6} {fig.p50_ms:>8.2f} {fig.p99_ms:>8.2f} "
                     f"{fig.rate:>9.1f}  {notes}")
    return "\n".join(lines)

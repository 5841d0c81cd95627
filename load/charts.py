"""PNG charts of the demo: plain data in, a file out (matplotlib, headless Agg backend).

The functions take the rows the demo read back from ClickHouse and the samples it
took during the run, so they can be drawn (and tested) without a pipeline.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DOMESTIC_COLOUR = "#2a9d8f"
INTERNATIONAL_COLOUR = "#e76f51"
SERVICE_COLOURS = {"EXPRESS": "#e63946", "STANDARD": "#457b9d", "ECONOMY": "#8d99ae"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def on_time_by_lane(
    lanes: Sequence[Mapping[str, Any]], path: Path, *, top: int = 20, min_delivered: int = 5
) -> Path:
    """Horizontal bars: on-time share per lane (the busiest ``top``), coloured by scope.

    Rows: ``lane``, ``scope`` (domestic/international), ``delivered``, ``on_time_share``.
    """
    plt = _pyplot()
    rows = [r for r in lanes if int(r["delivered"]) >= min_delivered] or list(lanes)
    rows = sorted(rows, key=lambda r: -int(r["delivered"]))[:top]
    rows.sort(key=lambda r: float(r["on_time_share"] or 0.0))
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.32 * len(rows) + 1.2)))
    shares = [100 * float(r["on_time_share"] or 0.0) for r in rows]
    colours = [DOMESTIC_COLOUR if r["scope"] == "domestic" else INTERNATIONAL_COLOUR for r in rows]
    labels = [f"{r['lane']}  ({int(r['delivered']):,})" for r in rows]
    bars = ax.barh(range(len(rows)), shares, color=colours)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    for bar, share in zip(bars, shares, strict=True):
        ax.text(
            min(share + 1, 93),
            bar.get_y() + bar.get_height() / 2,
            f"{share:.0f}%",
            va="center",
            fontsize=7,
        )
    ax.set_xlim(0, 100)
    ax.set_xlabel("delivered within the promise (%)")
    ax.set_title("On-time share by lane (deliveries; label: lane (parcels))")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=DOMESTIC_COLOUR),
        plt.Rectangle((0, 0), 1, 1, color=INTERNATIONAL_COLOUR),
    ]
    ax.legend(handles, promise_labels(lanes), loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def promise_labels(lanes: Sequence[Mapping[str, Any]]) -> list[str]:
    """Legend entries per scope with the promises its parcels really had (e.g. 12-48 h).

    Rows may carry ``promise_min``/``promise_max`` (hours); without them only the scope.
    """
    labels = []
    for scope in ("domestic", "international"):
        rows = [r for r in lanes if r["scope"] == scope and r.get("promise_min") is not None]
        if not rows:
            labels.append(scope)
            continue
        low = min(float(r["promise_min"]) for r in rows)
        high = max(float(r["promise_max"]) for r in rows)
        span = f"{low:.0f} h" if round(low) == round(high) else f"{low:.0f}-{high:.0f} h"
        labels.append(f"{scope} (promises {span}; each parcel against its own)")
    return labels


def transit_distributions(
    bins: Sequence[Mapping[str, Any]],
    path: Path,
    promises: Mapping[tuple[str, str], float] | None = None,
) -> Path:
    """Transit-time histograms, one panel per scope, one step line per service.

    Rows: ``scope``, ``service``, ``bin`` (lower edge, hours), ``parcels``. ``promises``:
    (scope, service) -> the parcels' median promise in hours, drawn as a dashed line in
    the service's colour (promises differ by service and lane, 12-168 h).
    """
    plt = _pyplot()
    scopes = [s for s in ("domestic", "international") if any(r["scope"] == s for r in bins)]
    fig, axes = plt.subplots(1, max(1, len(scopes)), figsize=(11, 4), squeeze=False, sharey=False)
    width = _bin_width(bins)
    for ax, scope in zip(axes[0], scopes or ["(no deliveries)"], strict=False):
        for service, colour in SERVICE_COLOURS.items():
            rows = sorted(
                (float(r["bin"]), int(r["parcels"]))
                for r in bins
                if r["scope"] == scope and r["service"] == service
            )
            if not rows:
                continue
            filled = {round(b, 6): c for b, c in rows}
            first, last = rows[0][0], rows[-1][0]
            steps = round((last - first) / width) + 1
            edges = [first + i * width for i in range(steps + 1)]
            counts = [filled.get(round(first + i * width, 6), 0) for i in range(steps)]
            total = sum(counts)
            ax.stairs(counts, edges, color=colour, linewidth=1.8, label=f"{service} ({total:,})")
            ax.stairs(counts, edges, color=colour, alpha=0.15, fill=True)
        for service, colour in SERVICE_COLOURS.items():
            promise = (promises or {}).get((scope, service))
            if promise is not None:
                ax.axvline(float(promise), color=colour, linestyle="--", linewidth=1)
                ax.text(
                    float(promise),
                    ax.get_ylim()[1] * 0.95,
                    f" {service.lower()} promise {float(promise):.0f} h",
                    fontsize=7,
                    rotation=90,
                    va="top",
                )
        ax.set_title(f"{scope}: registration to delivery")
        ax.set_xlabel("transit time (hours)")
        ax.set_ylabel("parcels")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def _bin_width(bins: Sequence[Mapping[str, Any]]) -> float:
    edges = sorted({float(r["bin"]) for r in bins})
    gaps = [b - a for a, b in itertools.pairwise(edges) if b > a]
    return min(gaps) if gaps else 1.0


def lag_seconds(samples: Sequence[tuple[float, int, int]]) -> list[float]:
    """How far behind the producer the worker is, in seconds, at each sample.

    Samples: (seconds since the start, produced, worker events in), cumulative. The lag
    at a sample is how long ago the producer had sent as many events as the worker has
    now taken in (0 when it has taken in everything sent).
    """
    lags: list[float] = []
    j = 0
    for t, produced, events_in in samples:
        if events_in >= produced:
            lags.append(0.0)
            continue
        while j < len(samples) - 1 and samples[j][1] < events_in:
            j += 1
        lags.append(max(0.0, t - samples[j][0]))
    return lags


def throughput(
    samples: Sequence[tuple[float, int, int]],
    path: Path,
    *,
    smooth_s: float = 2.0,
    lag_goal_s: float = 2.0,
    sink_lag: Sequence[tuple[float, int]] = (),
) -> Path:
    """Events/s produced and consumed, the worker's lag (s), and ClickHouse's own lag.

    Samples: (seconds since the start, produced, worker events in), cumulative; rates
    are differences over a ``smooth_s`` window. ``sink_lag``: (seconds, output records the
    sink has yet to read), drawn on a panel of its own: records are not events.
    """
    plt = _pyplot()
    panels = 3 if sink_lag else 2
    fig, axes = plt.subplots(panels, 1, figsize=(10, 3.3 * panels), sharex=True)
    top, bottom = axes[0], axes[1]
    for index, label, colour in (
        (1, "events produced to Kafka", "#264653"),
        (2, "events consumed by the worker", "#e76f51"),
    ):
        times, rates = _rates(samples, index, smooth_s)
        top.plot(times, rates, label=label, color=colour, linewidth=1.5)
    top.set_ylabel("events per second")
    top.set_title("Throughput during the demo")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    top.set_ylim(bottom=0)
    lags = lag_seconds(samples)
    bottom.plot([s[0] for s in samples], lags, color="#e76f51", label="worker lag")
    bottom.axhline(lag_goal_s, color="#888888", linestyle="--", linewidth=1, label="goal")
    bottom.set_xlabel("seconds since production started")
    bottom.set_ylabel("lag (s)")
    bottom.set_title("How far behind the producer the worker is", fontsize=9)
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3)
    bottom.set_ylim(bottom=0, top=max([lag_goal_s * 1.5, *lags]))
    if sink_lag:
        fresh = axes[2]
        fresh.plot([t for t, _ in sink_lag], [n for _, n in sink_lag], color="#2a9d8f")
        fresh.set_ylabel("records")
        fresh.set_title(
            "ClickHouse freshness: worker output records the sink has not stored yet", fontsize=9
        )
        fresh.grid(alpha=0.3)
        fresh.set_ylim(bottom=0)
    axes[-1].set_xlabel("seconds since production started")
    return _save(fig, path)


def _rates(
    samples: Sequence[tuple[float, ...]], index: int, window_s: float
) -> tuple[list[float], list[float]]:
    times: list[float] = []
    rates: list[float] = []
    start = 0
    for i, sample in enumerate(samples):
        while samples[start][0] < sample[0] - window_s and start < i - 1:
            start += 1
        if i == start:
            continue
        span = sample[0] - samples[start][0]
        if span <= 0:
            continue
        times.append(sample[0])
        rates.append((sample[index] - samples[start][index]) / span)
    return times, rates

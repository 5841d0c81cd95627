"""`trackbone eta-eval`: ETA accuracy against the simulator's ground truth (issue 7).

A pure replay (no Kafka): see `load/eta_eval.py` for what is folded, learned and scored.
Prints, per milestone, the MAE of eta_p50 and the p90 coverage for the model and for the
naive baseline (the promise), then the issue's goal verdicts; `--json` prints one object.
By default two warm-ups are reported: a cold start and a model that has learned from one
earlier run of the same size first (steady state).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

DEFAULT_PARCELS = 8000

HELP = "evaluate ETA accuracy against the simulator's ground truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the eta-eval options."""
    parser.add_argument(
        "--parcels", type=int, default=DEFAULT_PARCELS,
        help=f"parcels in the evaluated run of the default scenario (default {DEFAULT_PARCELS})",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=7, help="scenario seed (default 7)")
    parser.add_argument(
        "--warmup-hours", type=float, default=24.0,
        help="predictions made in the first H hours of the run are not scored (default 24)",
    )  # fmt: skip
    parser.add_argument(
        "--history-parcels", type=int, default=None,
        help="parcels of the earlier run the steady-state model learns from first "
        "(default: as many as --parcels; 0: report the cold start only)",
    )  # fmt: skip
    parser.add_argument("--cold-only", action="store_true", help="skip the steady-state evaluation")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _pct(x: float | None) -> str:
    return "   -  " if x is None else f"{x * 100:5.1f}%"


def _table(title: str, result: dict[str, Any]) -> list[str]:
    lines = [title]
    hist = result.get("history")
    warm = f"warm-up: first {result['warmup_hours']:g} h of the run not scored"
    if hist:
        warm += (
            f"; model first learned from an earlier run of {hist['parcels']} parcels "
            f"(seed {hist['seed']}, {hist['deliveries_learned']} delivered)"
        )
    else:
        warm += "; model starts empty (cold start)"
    lines.append(warm)
    header = (
        f"{'milestone':<22}{'n':>7}{'MAE h':>8}{'base h':>8}{'reduct':>8}"
        f"{'cov p90':>9}{'base cov':>9}"
    )
    lines += [header, "-" * len(header)]
    for name, m in result["milestones"].items():
        lines.append(
            f"{name:<22}{m['n']:>7}{m['mae_hours']:>8.2f}"
            f"{m.get('baseline_mae_hours', float('nan')):>8.2f}"
            f"{_pct(m.get('mae_reduction')):>8}{_pct(m['coverage_p90']):>9}"
            f"{_pct(m.get('baseline_coverage')):>9}"
        )
    lines.append("goals (issue 7):")
    for key, verdict in result["goals"].items():
        if isinstance(verdict, dict):
            mark = "MET " if verdict["met"] else "MISS"
            lines.append(
                f"  [{mark}] {key:<34} {_pct(verdict['value'])}  target {verdict['target']}"
            )
    lines.append(f"  all met: {'yes' if result['goals']['all_met'] else 'no'}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Run the evaluation(s); exit 0 whatever the verdicts (it is a measurement)."""
    from load import eta_eval

    if args.parcels <= 0 or args.warmup_hours < 0:
        print("eta-eval: --parcels must be > 0 and --warmup-hours >= 0", file=sys.stderr)
        return 2
    history = args.parcels if args.history_parcels is None else args.history_parcels
    runs: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    plans = [("cold_start", 0)]
    if history > 0 and not args.cold_only:
        plans.append(("steady_state", history))
    for name, hist in plans:
        print(f"eta-eval: {name} ({args.parcels} parcels, seed {args.seed})...", file=sys.stderr)
        began = time.perf_counter()
        runs[name] = eta_eval.run(args.parcels, args.seed, args.warmup_hours, history_parcels=hist)
        timings[name] = round(time.perf_counter() - began, 1)
    if args.json:
        out = dict(runs)
        out["seconds"] = timings
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    titles = {
        "cold_start": "== cold start: the model learns only within the evaluated run",
        "steady_state": "== steady state: the model has learned from an earlier run first",
    }
    blocks = [
        "\n".join(_table(f"{titles[name]} ({timings[name]} s)", res)) for name, res in runs.items()
    ]
    print("\n\n".join(blocks))
    return 0

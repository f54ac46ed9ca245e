"""Tables for the terminal and bench/results/latest.json."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.servers import ROOT

RESULTS = ROOT / "bench" / "results"


def machine_info() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "git_commit": commit,
        "git_dirty": bool(dirty),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    return {
        "rounds": len(runs),
        "rps": med("rps"),
        "p50_ms": med("p50_ms"),
        "p95_ms": med("p95_ms"),
        "p99_ms": med("p99_ms"),
        "errors": sum(r["errors"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "cpu_ms_per_req": med("cpu_ms_per_req"),
        "rss_mib_end": runs[-1]["rss_mib"],
        "rss_mib_max": max(r["rss_mib"] for r in runs),
    }


def ratio(tillpay: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> dict[str, float]:
    """tillpay/B1 req/s per round (round i with round i): median, min, max."""
    values = [a["rps"] / b["rps"] for a, b in zip(tillpay, baseline, strict=False) if b["rps"]]
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


HEADER = (
    f"{'app':16} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>7} "
    f"{'CPU ms/req':>10} {'RSS MiB':>11} {'PG rt/req':>9} {'Redis rt':>8}  ratio/B1"
)


def single_table(title: str, entry: dict[str, Any]) -> str:
    lines = [f"\n== {title} ==", HEADER, "-" * len(HEADER)]
    for name, summary in entry["summary"].items():
        rtt = entry.get("round_trips", {}).get(name, {})
        r = entry["ratio"] if name == "tillpay" else None
        ratio_text = f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})" if r else ""
        lines.append(
            f"{name:16} {summary['rps']:8.0f} {summary['p50_ms']:7.2f} {summary['p95_ms']:7.2f} "
            f"{summary['p99_ms']:7.2f} {summary['errors']:7d} {summary['cpu_ms_per_req']:10.2f} "
            f"{summary['rss_mib_end']:5.0f}/{summary['rss_mib_max']:<5.0f} "
            f"{_num(rtt.get('postgres')):>9} {_num(rtt.get('redis')):>8}  {ratio_text}"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def checkout_table(title: str, result: dict[str, Any], rtt: dict[str, float] | None) -> str:
    rt = rtt or {}
    return (
        f"\n== {title} ==\n"
        f"flows {result['flows']}  flows/s {result['flows_per_s']:.1f}  "
        f"p50 {result['p50_ms']:.0f} ms  p99 {result['p99_ms']:.0f} ms  "
        f"errors {result['errors']}  server CPU {result['cpu_ms_per_flow']:.1f} ms/flow  "
        f"RSS {result['rss_mib']:.0f} MiB  round trips/flow (request part): "
        f"PG {_num(rt.get('postgres'))} Redis {_num(rt.get('redis'))}"
        + (f"\n  error samples: {result['error_samples']}" if result["errors"] else "")
    )


def webhook_table(results: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'mode':22} {'payments':>8} {'paid':>5} {'s to all paid':>13} {'events/s':>8} "
        f"{'lost':>5} {'doubled':>7} {'no ledger':>9} {'dbl ledger':>10} {'unbalanced':>10}"
    )
    lines = ["\n== webhook (N pending sandbox payments completed at once) ==", head]
    lines.append("-" * len(head))
    for mode, r in results.items():
        lines.append(
            f"{mode:22} {r['payments']:8d} {r['paid']:5d} {r['seconds_until_all_paid']:13.2f} "
            f"{r['events_per_s']:8.1f} {r['orders_without_succeeded_payment']:5d} "
            f"{r['orders_with_doubled_payment']:7d} {r['payments_without_ledger_tx']:9d} "
            f"{r['payments_with_doubled_ledger_tx']:10d} {r['unbalanced_ledger_tx']:10d}"
        )
    return "\n".join(lines)


def storm_table(result: dict[str, Any]) -> str:
    b, d = result["before"], result["during"]
    return (
        f"\n== login_storm (order_read at {b['rate']:.0f} req/s = half the measured max) ==\n"
        f"before: p50 {b['p50_ms']:.1f} ms  p99 {b['p99_ms']:.1f} ms  errors {b['errors']}\n"
        f"during {result['stormers']} clients signing in ({result['logins_per_s']:.1f} "
        f"logins/s, {result['login_errors']} errors): p50 {d['p50_ms']:.1f} ms  "
        f"p99 {d['p99_ms']:.1f} ms  errors {d['errors']}\n"
        f"p99 during/before: {result['p99_ratio']:.2f}"
    )


def soak_table(result: dict[str, Any]) -> str:
    return (
        f"\n== soak (checkout_pay for {result['seconds']:.0f} s) ==\n"
        f"flows {result['flows']}  flows/s {result['flows_per_s']:.1f}  errors {result['errors']}  "
        f"RSS {result['rss_first']:.0f} → {result['rss_last']:.0f} MiB, slope "
        f"{result['rss_slope_mib_per_min']:+.2f} MiB/min\n"
        f"flow p99 first {result['window_s']:.0f} s {result['p99_first_ms']:.0f} ms, last "
        f"{result['window_s']:.0f} s {result['p99_last_ms']:.0f} ms"
    )


def write_json(data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "latest.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return path

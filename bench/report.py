"""The results: machine facts, a printed table, and the JSON file."""

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

from .goals import GOALS, SCENARIO_KEYS

ROOT = Path(__file__).resolve().parent.parent


def unit(key):
    for suffix, name in (("_per_s", "msg/s"), ("_ms_per_msg", "ms/msg"), ("_ms", "ms"), ("_s", "s"), ("_mb", "MiB")):
        if key.endswith(suffix):
            return name
    return ""


def _git(*args):
    try:
        done = subprocess.run(["git", *args], check=False, cwd=ROOT, capture_output=True, text=True, timeout=10)
        return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _broker_scheme():
    from celery_app import app

    return app.conf.broker_url.split("://", 1)[0]


def machine_info(bench):
    """Facts about where the numbers were taken (call with Django set up)."""
    import redis
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
        else:
            cursor.execute("SELECT sqlite_version()")
        db_version = cursor.fetchone()[0]
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "db_engine": connection.vendor,
        "db_version": db_version,
        "redis_version": redis.Redis.from_url(bench.redis.url).info("server")["redis_version"],
        "sandbox": bench.sandbox_mode,
        # What the producers and workers publish to (bench --broker).
        "broker": _broker_scheme(),
        "worker_pool": f"-P {bench.pool} -c {bench.concurrency}",
        "loadavg_start": os.getloadavg(),
    }


def build(results, errors, durations, machine, size, argv):
    keys = {}
    for scenario, values in results.items():
        for key, value in values.items():
            goal = GOALS.get(key)
            keys[key] = {
                "scenario": scenario,
                "value": value,
                "unit": unit(key),
                "goal": str(goal) if goal else None,
                "met": goal.met(value) if goal else None,
                "headline": key in SCENARIO_KEYS[scenario],
            }
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "size": size,
        "argv": argv,
        "machine": {**machine, "loadavg_end": os.getloadavg()},
        "results": keys,
        "scenarios": {name: {"seconds": round(durations.get(name, 0.0), 1), "error": errors.get(name)}
                      for name in durations},
    }


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def table(report):
    rows = [("scenario", "key", "value", "goal", "met?")]
    for key, item in report["results"].items():
        met = "" if item["met"] is None else ("yes" if item["met"] else "NO")
        value = f"{_fmt(item['value'])} {item['unit']}".strip()
        rows.append((item["scenario"], key if item["headline"] else f"  {key}", value, item["goal"] or "", met))
    for name, info in report["scenarios"].items():
        if info["error"]:
            rows.append((name, "ERROR", info["error"][:60], "", "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write(report, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return path

"""python -m bench [--scenarios a,b] [--size tiny|full] [--json PATH]

Runs the scenarios on real parts (a fresh database, a private Redis, the
Telegram sandbox, Celery worker subprocesses), prints a table and writes the
results as JSON (bench/results/latest.json by default).
"""

import argparse
import os
import sys
import time
import traceback

from .goals import SCENARIO_KEYS, SIZES
from .report import ROOT


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--scenarios", default=",".join(SCENARIO_KEYS),
                        help=f"comma-separated, from: {', '.join(SCENARIO_KEYS)} (default: all)")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "latest.json"), help="results file")
    parser.add_argument("--db-name",
                        help="PostgreSQL database (default cmms_bench) or SQLite file name under var/bench/")
    parser.add_argument("--sandbox", choices=("subprocess", "inprocess"), default="subprocess",
                        help="run the Telegram sandbox as its own process (default) or as a thread of this one")
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis",
                        help="Celery's broker: the private Redis (default) or a private RabbitMQ node "
                             "(rabbitmq-server must be installed); the rate limiter stays on Redis")
    parser.add_argument("--pool", default="threads", help="Celery worker pool (-P)")
    parser.add_argument("--concurrency", type=int, default=32, help="Celery worker concurrency (-c)")
    parser.add_argument("--inbox-clients", type=int,
                        help="WebSocket clients connected to the one ASGI process in the inbox scenario "
                             "(default: the size's, 1000 for full)")
    parser.add_argument("--profile", metavar="DIR", help="record py-spy profiles of the workers into DIR")
    parser.add_argument("--profile-mode", choices=("wall", "gil"), default="wall",
                        help="wall: every thread, waiting included; gil: only the thread holding the GIL (CPU)")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIO_KEYS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, str(ROOT))
    from .harness import PRODUCTION_ENV, Bench, prepare_database

    os.environ.update(PRODUCTION_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cmms.settings")
    url = prepare_database(args.db_name)
    import django

    django.setup()
    from . import report
    from .scenarios import SCENARIOS

    print(f"bench: size={args.size} database={url.split('@')[-1]} broker={args.broker} "
          f"scenarios={','.join(args.scenarios)}", flush=True)
    results, errors, durations = {}, {}, {}
    options = {"sandbox": args.sandbox, "broker": args.broker, "pool": args.pool, "concurrency": args.concurrency,
               "profile_dir": args.profile, "profile_mode": args.profile_mode}
    params = dict(SIZES[args.size])
    if args.inbox_clients:
        params["inbox_clients"] = args.inbox_clients
    with Bench(args.size, params, log=lambda line: print(line, flush=True), **options) as bench:
        machine = report.machine_info(bench)
        for name in args.scenarios:
            started = time.monotonic()
            print(f"[{name}] running", flush=True)
            try:
                results[name] = SCENARIOS[name](bench)
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others' numbers
                traceback.print_exc()
                errors[name] = f"{type(exc).__name__}: {exc}"
            durations[name] = time.monotonic() - started
            print(f"[{name}] {time.monotonic() - started:.1f} s", flush=True)
    data = report.build(results, errors, durations, machine, args.size, sys.argv[1:] if argv is None else argv)
    print()
    print(report.table(data))
    print(f"\nwritten: {report.write(data, args.json)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

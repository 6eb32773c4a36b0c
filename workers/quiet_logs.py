"""Keep the worker's and beat's INFO log about work, not about housekeeping.

The outbox and inbound relays run every 5 s, the statistics refresh every 30 s
and the hourly roll-up every minute. At
INFO, Celery logs three lines for each run (beat "Sending due task", worker
"received" and "succeeded"), so ``make run`` scrolled a line a second while
nothing happened. These filters drop those lines for the housekeeping tasks.
A relay's "succeeded" line stays when its result counts something (e.g.
``{'republished': 3}``); the statistics refresh and the roll-up are always
quiet (their results are running totals). Failures are always logged (only receipt, success
and beat's sending are filtered). With the logger at DEBUG nothing is
dropped.

Installed on the loggers themselves (not on handlers), so they survive
Celery replacing the root logger's handlers. Standard library only: it is
installed from celery_app.py before Django is set up.
"""

import logging
import re

HOUSEKEEPING_TASKS = frozenset({"workers.relay_outbox", "workers.relay_inbound", "workers.refresh_channel_stats",
                                "workers.rollup_message_stats", "workers.relay_role_broadcasts"})
# Results that are running totals, not work done: never worth a line.
ALWAYS_QUIET = frozenset({"workers.refresh_channel_stats", "workers.rollup_message_stats"})
# Loggers and the Celery message formats they use for the lines we drop.
_RECEIPT_AND_SUCCESS = ("celery.app.trace", "celery.worker.strategy")
_BEAT = "celery.beat"


class HousekeepingFilter(logging.Filter):
    def __init__(self, tasks=HOUSEKEEPING_TASKS):
        super().__init__()
        self.tasks = tasks

    def filter(self, record):
        if record.levelno > logging.INFO or logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True
        return not self._is_housekeeping(record)

    def _is_housekeeping(self, record):
        args = record.args
        if record.name == _BEAT:
            # info('Scheduler: Sending due task %s (%s)', entry.name, entry.task)
            return (isinstance(args, tuple) and len(args) == 2 and str(record.msg).startswith("Scheduler: Sending")
                    and args[1] in self.tasks)
        if isinstance(args, dict) and args.get("name") in self.tasks:
            msg = str(record.msg)
            if " received" in msg:
                return True
            if " succeeded " in msg:
                return args["name"] in ALWAYS_QUIET or _idle(args.get("return_value"))
        return False


def _idle(result):
    """A relay's result ({'due': 0, 'published': 0, ...}, as Celery's repr) counts nothing."""
    return all(n == "0" for n in re.findall(r"\d+", str(result)))


def install():
    quiet = HousekeepingFilter()
    for name in (*_RECEIPT_AND_SUCCESS, _BEAT):
        logger = logging.getLogger(name)
        if not any(isinstance(f, HousekeepingFilter) for f in logger.filters):
            logger.addFilter(quiet)

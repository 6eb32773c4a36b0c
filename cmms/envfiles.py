"""The two files every ``manage.py`` and ``celery`` process reads before its
settings, so a command typed in a second terminal talks to what ``make run``
started.

1. ``.env`` at the project root (or ``CMMS_ENV_FILE``): the user's own settings (the seed says to put
   ``TELEGRAM_BOT_TOKEN`` there). Read with python-dotenv.
2. ``var/run.env``: what a running ``make run`` chose (the Redis URL, the
   sandbox's URL and token, ports, ``SITE_URL``). ``scripts/run_all.py`` writes
   it at start and removes it when it stops; a file left behind by a killed
   ``make run`` is ignored, because its ``CMMS_RUN_PID`` is no longer alive.

Precedence: a variable set in the real environment wins over ``.env``, which
wins over ``var/run.env``; neither file overrides anything already set.
``CMMS_ENV_FILES=0`` skips both. Under pytest it defaults to 0 (and the
worker processes the tests start inherit it), so a ``make run`` in another
terminal or a developer's ``.env`` cannot leak into the tests.

Standard library plus python-dotenv only: ``scripts/run_all.py`` imports it
without Django.
"""

import os
import sys
from pathlib import Path

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent
RUN_ENV_PID = "CMMS_RUN_PID"


def user_env_file():
    return Path(os.environ.get("CMMS_ENV_FILE") or ROOT / ".env")


def run_env_file():
    return Path(os.environ.get("CMMS_VAR_DIR") or ROOT / "var") / "run.env"


def _pid_alive(value):
    try:
        pid = int(value)
    except (TypeError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_user_env():
    """``.env`` as a dict (empty when there is none); values set without ``=`` are dropped."""
    path = user_env_file()
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def read_run_env():
    """``var/run.env`` as a dict, or {} when absent or left by a ``make run`` that is gone."""
    path = run_env_file()
    if not path.is_file():
        return {}
    values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    if not _pid_alive(values.get(RUN_ENV_PID)):
        return {}
    return values


def load():
    """Apply both files to os.environ without overriding anything already set.
    Returns {name: origin} for the variables that came from a file
    (origin ".env" or "make run")."""
    if "pytest" in sys.modules:
        os.environ.setdefault("CMMS_ENV_FILES", "0")
    if os.environ.get("CMMS_ENV_FILES", "1").strip().lower() in ("0", "false", "no", "off"):
        return {}
    origins = {}
    for origin, values in ((".env", read_user_env()), ("make run", read_run_env())):
        for name, value in values.items():
            if name not in os.environ:
                os.environ[name] = value
                origins[name] = origin
    return origins


def write_run_env(values, pid):
    """Publish what ``make run`` chose; returns the path written."""
    path = run_env_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by `make run` (scripts/run_all.py) while it runs; removed when it stops.",
             "# Read by every manage.py and celery process after .env, never overriding either.",
             f"{RUN_ENV_PID}={pid}"]
    for name, value in values.items():
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{name}="{escaped}"')
    tmp = path.with_suffix(".env.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)  # it may hold the sandbox token; a real token is never written here
    tmp.replace(path)
    return path


def remove_run_env(pid):
    """Remove var/run.env if it is ours (a second ``make run`` may have replaced it)."""
    path = run_env_file()
    try:
        values = dotenv_values(path)
    except OSError:
        return
    if values.get(RUN_ENV_PID) == str(pid):
        path.unlink(missing_ok=True)

#!/usr/bin/env python3
"""Run the whole system on this machine with embedded defaults (``make run``).

What it does, in order:

1. Redis: uses REDIS_URL (default redis://127.0.0.1:6379/0) when it answers
   PING; otherwise starts a private, non-persistent ``redis-server`` on
   127.0.0.1 (port 6380 when free) with its files in var/. Redis is the
   broker too, unless CELERY_BROKER_URL names RabbitMQ (amqp://...): then
   that RabbitMQ must answer, or run_all stops saying so (it starts none).
2. ``manage.py migrate --noinput`` and ``manage.py bootstrap_demo`` (the demo
   logins).
3. Without TELEGRAM_BOT_TOKEN: the local Telegram sandbox (``python -m
   sandbox``), and TELEGRAM_API_URL/TELEGRAM_BOT_TOKEN pointing at it. With a
   real token, the real Bot API. Without TWILIO_ACCOUNT_SID: the Twilio sandbox
   (``python -m sandbox.twilio``), TWILIO_* and SITE_URL pointing at it and back.
   Without EMAIL_URL: the local SMTP capture server (``python -m sandbox.smtp``,
   SMTP_PORT 1025, its page on MAIL_PAGE_PORT 8025) and EMAIL_URL pointing at it.
4. The ASGI server (uvicorn serving ``cmms.asgi``: the admin, the inbox and
   its WebSocket), one Celery worker consuming every queue, celery beat
   with the DatabaseScheduler, and Flower.

What it chose (the Redis URL, the sandbox's URL and token, the ports,
SITE_URL) is published in var/run.env, which every ``manage.py`` and
``celery`` process reads after ``.env`` without overriding either
(cmms/envfiles.py), so commands typed in a second terminal talk to this run.
The file goes away when run_all stops. Variables in ``.env`` count as set
(e.g. a TELEGRAM_BOT_TOKEN there means the real Bot API, no sandbox).

Each child's output is prefixed with its name. Ctrl-C (or SIGTERM) stops all
children: SIGTERM, then SIGKILL after a timeout. If a child dies on its own,
its last lines are printed, everything is stopped and the exit status is 1.

Standard library plus python-dotenv (through cmms/envfiles.py); run it with the project's virtualenv Python
(``make run`` does), since the children need Django and Celery.
"""

import argparse
import collections
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_services import AMQP_SCHEMES, DEFAULT_REDIS_URL, amqp_ping, redact_url, redis_ping

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("CMMS_VAR_DIR") or ROOT / "var")
DEMO_SUMMARY = VAR / "demo-summary.json"


def _load_envfiles():
    """cmms/envfiles.py by path: importing the cmms package would load Django."""
    spec = importlib.util.spec_from_file_location("cmms_envfiles", ROOT / "cmms" / "envfiles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
SANDBOX_TOKEN = "100000:sandbox-token-not-secret"  # the sandbox accepts any well-shaped token
# The Twilio sandbox's account (python -m sandbox.twilio), used when TWILIO_ACCOUNT_SID is not set.
TWILIO_SANDBOX_ENV = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 31 + "1", "TWILIO_AUTH_TOKEN": "sandbox-twilio-auth-token-0001",
                      "TWILIO_FROM_NUMBER": "+15005550006"}
# The WhatsApp sandbox's account (python -m sandbox.whatsapp), used when WHATSAPP_ACCESS_TOKEN is not set.
WHATSAPP_SANDBOX_ENV = {"WHATSAPP_ACCESS_TOKEN": "sandbox-whatsapp-token", "WHATSAPP_PHONE_NUMBER_ID": "100200300400500",
                        "WHATSAPP_APP_SECRET": "sandbox-whatsapp-app-secret"}
HOST = "127.0.0.1"


def env_int(name, default):
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        sys.exit(f"run_all: {name}={value!r} is not a number")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Run Redis (if needed), the Telegram sandbox, Django, Celery and Flower.")
    p.add_argument("--web-port", type=int, default=env_int("WEB_PORT", 8000), help="Django (env WEB_PORT, 8000)")
    p.add_argument("--flower-port", type=int, default=env_int("FLOWER_PORT", 5555),
                   help="Flower (env FLOWER_PORT, 5555)")
    p.add_argument("--sandbox-port", type=int, default=env_int("SANDBOX_PORT", 8081),
                   help="Telegram sandbox (env SANDBOX_PORT, 8081)")
    p.add_argument("--twilio-port", type=int, default=env_int("TWILIO_SANDBOX_PORT", 8082),
                   help="Twilio SMS sandbox, when TWILIO_ACCOUNT_SID is not set (env TWILIO_SANDBOX_PORT, 8082)")
    p.add_argument("--whatsapp-port", type=int, default=env_int("WHATSAPP_SANDBOX_PORT", 8083),
                   help="WhatsApp sandbox, when WHATSAPP_ACCESS_TOKEN is not set (env WHATSAPP_SANDBOX_PORT, 8083)")
    p.add_argument("--redis-port", type=int, default=env_int("REDIS_PRIVATE_PORT", 6380),
                   help="preferred port of the private redis-server, when one is needed (env REDIS_PRIVATE_PORT, 6380)")
    p.add_argument("--concurrency", type=int, default=env_int("WORKER_CONCURRENCY", 8),
                   help="worker threads (env WORKER_CONCURRENCY, 8)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="do not start the sandbox even without TELEGRAM_BOT_TOKEN (use the token stored by "
                        "setup_telegram_bot)")
    p.add_argument("--no-flower", action="store_true", help="do not start Flower")
    p.add_argument("--no-beat", action="store_true", help="do not start celery beat")
    p.add_argument("--startup-timeout", type=float, default=float(env_int("RUN_ALL_STARTUP_TIMEOUT", 90)),
                   help="seconds to wait for each service to answer (env RUN_ALL_STARTUP_TIMEOUT, 90)")
    p.add_argument("--stop-timeout", type=float, default=float(env_int("RUN_ALL_STOP_TIMEOUT", 15)),
                   help="seconds between SIGTERM and SIGKILL on shutdown (env RUN_ALL_STOP_TIMEOUT, 15)")
    return p.parse_args(argv)


class Fatal(Exception):
    """A startup problem with a message meant for the user."""


# --- output -------------------------------------------------------------------

COLORS = {"redis": 31, "setup": 37, "sandbox": 35, "whatsapp": 92, "web": 32, "worker": 36, "beat": 33, "flower": 34,
          "bot": 95}


class Console:
    WIDTH = 7

    def __init__(self):
        self.lock = threading.RLock()  # RLock: the signal handler may print while the main thread prints
        self.color = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        try:
            sys.stdout.reconfigure(errors="replace", line_buffering=True)
        except (AttributeError, ValueError):
            pass

    def _write(self, text):
        with self.lock:
            try:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                pass

    def line(self, name, text):
        prefix = f"{name:<{self.WIDTH}} |"
        if self.color:
            prefix = f"\033[{COLORS.get(name, 37)}m{prefix}\033[0m"
        self._write(f"{prefix} {text}")

    def say(self, text):
        self._write(f"\033[1m{text}\033[0m" if self.color else text)


console = Console()


def say(text=""):
    console.say(f"run_all: {text}" if text else "")


# --- children -----------------------------------------------------------------

# Readiness checks go straight to 127.0.0.1, whatever http_proxy says.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
ENVFILES = _load_envfiles()

class Child:
    """A child process in its own session (a terminal's Ctrl-C reaches only
    us, and we stop the children in order), its output prefixed and its last
    lines kept for a post-mortem."""

    def __init__(self, name, args, env, ready_url=None, ready_text=None):
        self.name = name
        self.args = [str(a) for a in args]
        self.env = env
        self.ready_url = ready_url
        self.ready_text = ready_text
        self.tail = collections.deque(maxlen=40)
        self.lines = []
        self.seen_ready_text = threading.Event()
        self.proc = None
        self.reader = None
        self.ready = False

    def start(self):
        self.proc = subprocess.Popen(
            DEATH_WRAPPER + self.args, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.reader = threading.Thread(target=self._pump, name=f"{self.name}-output", daemon=True)
        self.reader.start()
        return self

    def _pump(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.tail.append(line)
            self.lines.append(line)
            if len(self.lines) > 2000:
                del self.lines[:1000]
            if self.ready_text and self.ready_text in line:
                self.seen_ready_text.set()
            console.line(self.name, line)
        self.proc.stdout.close()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def returncode(self):
        return self.proc.poll() if self.proc else None

    def signal_group(self, sig):
        """Signal the child's whole process group (it leads its own session)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            self.proc.send_signal(sig)

    def finish_output(self, timeout=2.0):
        if self.reader:
            self.reader.join(timeout)

    def check_ready(self):
        """True once the child answers: an HTTP response from ready_url, the
        ready_text in its output, or (with neither) being alive."""
        if self.ready:
            return True
        if self.ready_url:
            try:
                with DIRECT.open(self.ready_url, timeout=1.0) as resp:
                    resp.read(64)
                self.ready = True
            except urllib.error.HTTPError:
                self.ready = True  # it answers; an error page is still an answer
            except (urllib.error.URLError, OSError):
                return False
        elif self.ready_text:
            self.ready = self.seen_ready_text.is_set()
        else:
            self.ready = self.alive()
        return self.ready

    def describe_exit(self):
        code = self.returncode()
        if code is None:
            return "is still running"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"


PID_FILE = VAR / "run_all.pids"


def _death_wrapper():
    """On Linux, `setpriv --pdeathsig KILL` makes each child die with us even
    when we are SIGKILLed and cannot stop them (they run in their own
    sessions). Elsewhere leftovers are reported on the next start instead."""
    setpriv = shutil.which("setpriv")
    if not setpriv or not sys.platform.startswith("linux"):
        return []
    try:
        probe = subprocess.run([setpriv, "--pdeathsig", "KILL", "true"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [setpriv, "--pdeathsig", "KILL"] if probe.returncode == 0 else []


DEATH_WRAPPER = _death_wrapper()


def leftover_pids():
    """Children of an earlier run_all that was killed before it could stop
    them (they live in their own sessions, so they outlive it)."""
    try:
        pids = [int(p) for p in PID_FILE.read_text().split()]
    except (OSError, ValueError):
        return []
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists():
            text = cmdline.read_bytes().replace(b"\0", b" ")
            if not any(k in text for k in (b"celery_app", b"manage.py", b"sandbox", b"redis-server")):
                continue  # the pid was reused by something else
        alive.append(pid)
    return alive


def port_free(port, host=HOST):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --- the supervisor -----------------------------------------------------------

class Supervisor:
    def __init__(self, args):
        self.args = args
        self.children = []  # in start order
        self.redis = None  # our private redis-server, when we started one
        self.stop_signal = None
        self.force = False
        self.stopping = False
        self.death = None

    # signals ----------------------------------------------------------------
    def install_signal_handlers(self):
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        if self.stop_signal is not None or self.stopping:
            if not self.force:
                self.force = True
                console.say("run_all: second signal: killing everything now")
            return
        self.stop_signal = signum

    def stop_requested(self):
        return self.stop_signal is not None

    def sleep(self, seconds):
        """Sleep, but wake up early on a stop request."""
        deadline = time.monotonic() + seconds
        while not self.stop_requested() and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    # startup ----------------------------------------------------------------
    def preflight(self):
        if not (ROOT / "manage.py").exists():
            raise Fatal(f"{ROOT / 'manage.py'} is missing: run this from a complete checkout.")
        needed = ("django", "celery", "flower", "django_celery_beat", "uvicorn", "channels")
        missing = [m for m in needed if importlib.util.find_spec(m) is None]
        if missing:
            raise Fatal(
                f"{', '.join(missing)} not installed for {sys.executable}.\n"
                "  Run `make run` (it creates .venv), or .venv/bin/python scripts/run_all.py."
            )
        self.use_sandbox = not os.environ.get("TELEGRAM_BOT_TOKEN") and not self.args.no_sandbox
        if self.use_sandbox and not (ROOT / "sandbox" / "__main__.py").exists():
            raise Fatal(
                "TELEGRAM_BOT_TOKEN is not set and the Telegram sandbox (sandbox/__main__.py) is missing.\n"
                "  Set TELEGRAM_BOT_TOKEN to use the real Bot API, or pass --no-sandbox."
            )
        wanted = [("WEB_PORT / --web-port", self.args.web_port, "Django")]
        if not self.args.no_flower:
            wanted.append(("FLOWER_PORT / --flower-port", self.args.flower_port, "Flower"))
        if self.use_sandbox:
            wanted.append(("SANDBOX_PORT / --sandbox-port", self.args.sandbox_port, "the Telegram sandbox"))
        if not os.environ.get("TWILIO_ACCOUNT_SID"):
            wanted.append(("TWILIO_SANDBOX_PORT / --twilio-port", self.args.twilio_port, "the Twilio sandbox"))
        if not os.environ.get("WHATSAPP_ACCESS_TOKEN"):
            wanted.append(("WHATSAPP_SANDBOX_PORT / --whatsapp-port", self.args.whatsapp_port, "the WhatsApp sandbox"))
        ports = [p for _, p, _ in wanted]
        if len(set(ports)) != len(ports):
            raise Fatal(f"two services were given the same port: {', '.join(f'{w} = {p}' for w, p, _ in wanted)}")
        taken = [(var, port, what) for var, port, what in wanted if not port_free(port)]
        if taken:
            lines = [f"  port {port} ({what}) is already in use on {HOST}; pick another with {var}"
                     for var, port, what in taken]
            leftovers = leftover_pids()
            if leftovers:
                pids = " ".join(map(str, leftovers))
                lines.append(f"  processes of an earlier `make run` are still running: kill {pids}")
            raise Fatal("a port is taken:\n" + "\n".join(lines))
        VAR.mkdir(parents=True, exist_ok=True)

    def base_env(self):
        env = dict(os.environ)
        env.setdefault("DJANGO_SETTINGS_MODULE", "cmms.settings")
        # Every process logs in the project's time zone (Django sets TZ for its
        # own processes; the sandbox and redis-server would otherwise use the system's).
        env["TZ"] = env.get("TIME_ZONE") or "America/Santiago"
        # Links in messages point where this run serves.
        env["SITE_URL"] = env.get("SITE_URL") or f"http://{HOST}:{self.args.web_port}"
        # DEBUG is off by default (cmms/settings.py); the local demo turns it on
        # for itself (static files from runserver, the demo's known passwords).
        env.setdefault("DJANGO_DEBUG", "1")
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        # The worker talks to the sandbox on 127.0.0.1: never through a proxy.
        for name in ("NO_PROXY", "no_proxy"):
            hosts = [h for h in env.get(name, "").split(",") if h.strip()]
            env[name] = ",".join(hosts + [h for h in ("127.0.0.1", "localhost") if h not in hosts])
        return env

    def setup_redis(self, env):
        url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
        ok, reason = redis_ping(url)
        if ok:
            self.redis_note = f"{redact_url(url)}"
            return url
        binary = shutil.which("redis-server")
        if not binary:
            raise Fatal(
                f"Redis is required: nothing answers at REDIS_URL={redact_url(url)} ({reason}),\n"
                "  and redis-server is not installed to start a private one.\n"
                "  Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis),\n"
                "  or set REDIS_URL to a running Redis."
            )
        port = self.args.redis_port if port_free(self.args.redis_port) else free_port()
        say(f"no Redis at {redact_url(url)} ({reason}); starting a private redis-server on {HOST}:{port}")
        rdir = VAR / "redis"
        rdir.mkdir(parents=True, exist_ok=True)
        self.redis = Child("redis", [binary, "--port", port, "--bind", HOST, "--save", "", "--appendonly", "no",
                                     "--dir", rdir, "--daemonize", "no", "--loglevel", "warning"], env).start()
        self.write_pids()
        url = f"redis://{HOST}:{port}/0"
        deadline = time.monotonic() + 15
        while not redis_ping(url, timeout=0.5)[0]:
            if not self.redis.alive():
                self.redis.finish_output()
                raise Fatal(f"the private redis-server {self.redis.describe_exit()}:\n" + "\n".join(self.redis.tail))
            if self.stop_requested():
                return None
            if time.monotonic() > deadline:
                raise Fatal(f"the private redis-server did not answer PING on port {port} within 15 s")
            time.sleep(0.1)
        self.redis_note = f"{url} (private redis-server, nothing persisted; stops with run_all)"
        return url

    def check_broker(self):
        """CELERY_BROKER_URL, when set, wins over REDIS_URL for the broker; a
        RabbitMQ there must answer now, not after every process has started."""
        self.broker_note = None
        broker = os.environ.get("CELERY_BROKER_URL")
        if not broker:
            return
        if broker.partition("://")[0].lower() in AMQP_SCHEMES:
            ok, reason = amqp_ping(broker)
            if not ok:
                raise Fatal(
                    f"CELERY_BROKER_URL={redact_url(broker)} names RabbitMQ, and nothing answers there ({reason}).\n"
                    "  Start RabbitMQ (Debian/Ubuntu: apt-get install rabbitmq-server), fix the URL,\n"
                    "  or unset CELERY_BROKER_URL to use Redis as the broker (the default)."
                )
            self.broker_note = f"{redact_url(broker)} (RabbitMQ; Redis keeps the rate limits)"
        else:
            self.broker_note = redact_url(broker)
            say("note: CELERY_BROKER_URL is set and overrides REDIS_URL for the broker")

    def run_once(self, label, args, env):
        """Run a setup command to completion, its output prefixed; returns its lines."""
        child = Child("setup", args, env).start()
        while child.alive():
            if self.stop_requested():
                child.signal_group(signal.SIGTERM)
                try:
                    child.proc.wait(self.args.stop_timeout)
                except subprocess.TimeoutExpired:
                    child.signal_group(signal.SIGKILL)
                    child.proc.wait()
                child.finish_output()
                return None
            time.sleep(0.1)
        child.finish_output()
        if child.returncode() != 0:
            raise Fatal(f"`{label}` {child.describe_exit()}; its output is above.")
        return child.lines

    def start_child(self, *a, **kw):
        child = Child(*a, **kw).start()
        self.children.append(child)
        self.write_pids()
        return child

    def write_pids(self):
        pids = [c.pid for c in ([self.redis] if self.redis else []) + self.children]
        try:
            PID_FILE.write_text(" ".join(map(str, pids)) + "\n")
        except OSError:
            pass

    def dead_child(self):
        for child in ([self.redis] if self.redis else []) + self.children:
            if not child.alive():
                return child
        return None

    def wait_ready(self, children):
        deadline = time.monotonic() + self.args.startup_timeout
        pending = list(children)
        while pending:
            if self.stop_requested():
                return False
            dead = self.dead_child()
            if dead:
                self.report_death(dead)
                return False
            pending = [c for c in pending if not c.check_ready()]
            if not pending:
                return True
            if time.monotonic() > deadline:
                strict = [c for c in pending if c.ready_url]
                if strict:
                    say(f"{', '.join(c.name for c in strict)} did not answer within {self.args.startup_timeout:g} s "
                        "(see their output above; raise RUN_ALL_STARTUP_TIMEOUT on a slow machine)")
                    return False
                # A log line we did not recognize is not worth failing for.
                say(f"{', '.join(c.name for c in pending)} still starting; continuing")
                return True
            time.sleep(0.2)
        return True

    def report_death(self, child):
        child.finish_output()
        self.death = f"{child.name} {child.describe_exit()}"
        say(f"{child.name} (pid {child.pid}) {child.describe_exit()} unexpectedly. Its last lines:")
        for line in list(child.tail)[-25:]:
            console.line(child.name, line)

    def start(self):
        a = self.args
        env = self.base_env()
        redis_url = self.setup_redis(env)
        if redis_url is None:
            return None
        env["REDIS_URL"] = redis_url
        self.check_broker()

        py = sys.executable
        say("applying migrations")
        if self.run_once("manage.py migrate --noinput", [py, "manage.py", "migrate", "--noinput"], env) is None:
            return None
        say("creating the demo users")
        DEMO_SUMMARY.unlink(missing_ok=True)
        lines = self.run_once("manage.py bootstrap_demo",
                              [py, "manage.py", "bootstrap_demo", "--summary-json", DEMO_SUMMARY], env)
        if lines is None:
            return None
        logins = demo_logins(DEMO_SUMMARY)

        first = []
        if self.use_sandbox:
            sandbox_url = f"http://{HOST}:{a.sandbox_port}"
            env["TELEGRAM_API_URL"] = sandbox_url
            env["TELEGRAM_BOT_TOKEN"] = SANDBOX_TOKEN
            # The sandbox knows exactly the demo users' chats: any other chat id
            # answers "chat not found", as Telegram would.
            first.append(self.start_child("sandbox", [py, "-m", "sandbox", "--host", HOST, "--port", a.sandbox_port,
                                                      "--known-chats", DEMO_SUMMARY],
                                          env, ready_url=f"{sandbox_url}/"))
            if not self.wait_ready(first):
                return None
        if not os.environ.get("TWILIO_ACCOUNT_SID"):
            twilio_url, web = f"http://{HOST}:{a.twilio_port}", f"http://{HOST}:{a.web_port}"
            env.update(TWILIO_SANDBOX_ENV, TWILIO_API_URL=twilio_url, SITE_URL=os.environ.get("SITE_URL") or web)
            twilio = [self.start_child("twilio", [py, "-m", "sandbox.twilio", "--host", HOST, "--port", a.twilio_port,
                                                  "--inbound-url", f"{env['SITE_URL']}/sms/twilio/inbound/"],
                                       env, ready_url=f"{twilio_url}/_sandbox/health")]
            if not self.wait_ready(twilio):
                return None
        if not os.environ.get("WHATSAPP_ACCESS_TOKEN"):
            wa_url = f"http://{HOST}:{a.whatsapp_port}"
            env.update(WHATSAPP_SANDBOX_ENV, WHATSAPP_API_URL=f"{wa_url}/v21.0")
            whatsapp = [self.start_child("whatsapp", [
                py, "-m", "sandbox.whatsapp", "--port", a.whatsapp_port, "--token", env["WHATSAPP_ACCESS_TOKEN"],
                "--phone-number-id", env["WHATSAPP_PHONE_NUMBER_ID"], "--app-secret", env["WHATSAPP_APP_SECRET"],
                "--webhook-url", f"http://{HOST}:{a.web_port}/whatsapp/webhook/"], env, ready_url=f"{wa_url}/")]
            if not self.wait_ready(whatsapp):
                return None
        if not os.environ.get("EMAIL_URL"):  # the local SMTP capture server and its page (sandbox/smtp.py)
            smtp_port, page_port = env_int("SMTP_PORT", 1025), env_int("MAIL_PAGE_PORT", 8025)
            env["EMAIL_URL"], self.mail_page = f"smtp://{HOST}:{smtp_port}", f"http://{HOST}:{page_port}/"
            if not self.wait_ready([self.start_child("smtp", [py, "-m", "sandbox.smtp", "--port", smtp_port,
                                                              "--page-port", page_port], env,
                                                     ready_url=f"{self.mail_page}api/health")]):
                return None

        web_url = f"http://{HOST}:{a.web_port}"
        flower_url = f"http://{HOST}:{a.flower_port}"
        rest = [
            # The ASGI server (HTTP and the inbox's WebSocket); the same command as in production.
            self.start_child("web", [py, "-m", "uvicorn", "cmms.asgi:application", "--host", HOST, "--port", a.web_port,
                                     "--lifespan", "off", "--ws", "websockets-sansio"], env,
                             ready_url=f"{web_url}/admin/login/"),
            self.start_child("worker", [py, "-m", "celery", "-A", "celery_app", "worker", "-l", "info", "-P", "threads",
                                        "-c", a.concurrency, "-n", f"cmms-run-{os.getpid()}@%h"], env,
                             ready_text=" ready."),
        ]
        if not a.no_beat:
            rest.append(self.start_child("beat", [py, "-m", "celery", "-A", "celery_app", "beat", "-l", "info",
                                                  "-S", "django_celery_beat.schedulers:DatabaseScheduler",
                                                  "--pidfile="], env, ready_text="beat: Starting..."))
        if self.use_sandbox:
            # The interactive bot by long polling (with a real token, choose polling or a webhook yourself).
            rest.append(self.start_child("bot", [py, "manage.py", "run_telegram_bot"], env,
                                         ready_text="Polling getUpdates"))
        if not a.no_flower:
            rest.append(self.start_child("flower", [py, "-m", "celery", "-A", "celery_app", "flower",
                                                    f"--address={HOST}", f"--port={a.flower_port}"], env,
                                         ready_url=f"{flower_url}/"))
        if not self.wait_ready(rest):
            return None
        self.publish(env)
        return {"web": web_url, "flower": flower_url, "logins": logins,
                "sandbox": f"http://{HOST}:{a.sandbox_port}/" if self.use_sandbox else None}

    def publish(self, env):
        """var/run.env: what this run chose, for commands in other terminals."""
        names = ["REDIS_URL", "SITE_URL", "WEB_PORT", "FLOWER_PORT"]
        values = {"WEB_PORT": self.args.web_port, "FLOWER_PORT": self.args.flower_port}
        if self.use_sandbox:
            names += ["TELEGRAM_API_URL", "TELEGRAM_BOT_TOKEN", "SANDBOX_PORT"]
            values["SANDBOX_PORT"] = self.args.sandbox_port
        if env.get("TWILIO_ACCOUNT_SID") == TWILIO_SANDBOX_ENV["TWILIO_ACCOUNT_SID"]:  # the Twilio sandbox's, not a real one
            names += [*TWILIO_SANDBOX_ENV, "TWILIO_API_URL", "TWILIO_SANDBOX_PORT"]
            values["TWILIO_SANDBOX_PORT"] = self.args.twilio_port
        if env.get("WHATSAPP_ACCESS_TOKEN") == WHATSAPP_SANDBOX_ENV["WHATSAPP_ACCESS_TOKEN"]:  # the WhatsApp sandbox's
            names += [*WHATSAPP_SANDBOX_ENV, "WHATSAPP_API_URL", "WHATSAPP_SANDBOX_PORT"]
            values["WHATSAPP_SANDBOX_PORT"] = self.args.whatsapp_port
        published = {n: values.get(n, env.get(n)) for n in names if values.get(n, env.get(n)) is not None}
        self.run_env = ENVFILES.write_run_env(published, os.getpid())

    def banner(self, info):
        rule = "=" * 72
        db = os.environ.get("DATABASE_URL")
        out = [rule, "  CMMS omnichannel bot is running", "",
               f"  Django admin    {info['web']}/admin/",
               f"  Inbox           {info['web']}/inbox/",
               f"  Dashboard       {info['web']}/dashboard/   (supervisors and admins)"]
        if info["sandbox"]:
            out.append(f"  Telegram chat   {info['sandbox']}   (local sandbox: TELEGRAM_BOT_TOKEN is not set)")
        elif os.environ.get("TELEGRAM_BOT_TOKEN"):
            api = os.environ.get("TELEGRAM_API_URL") or "https://api.telegram.org"
            out.append(f"  Telegram        {api} (TELEGRAM_BOT_TOKEN is set)")
        else:
            out.append("  Telegram        the token stored by setup_telegram_bot (--no-sandbox)")
        if not os.environ.get("TWILIO_ACCOUNT_SID"):
            out.append(f"  SMS phones      http://{HOST}:{self.args.twilio_port}/   (local Twilio sandbox)")
        if not os.environ.get("WHATSAPP_ACCESS_TOKEN"):
            out.append(f"  WhatsApp chat   http://{HOST}:{self.args.whatsapp_port}/   (local WhatsApp sandbox)")
        if getattr(self, "mail_page", None):
            out.append(f"  Captured mail   {self.mail_page}   (local SMTP server: EMAIL_URL is not set)")
        if not self.args.no_flower:
            out.append(f"  Flower          {info['flower']}/")
        out.append(f"  Redis           {self.redis_note}")
        if getattr(self, "broker_note", None):
            out.append(f"  Broker          {self.broker_note}")
        out.append(f"  Database        {redact_url(db) if db else 'SQLite, var/db.sqlite3'}")
        if info["logins"]:
            out += ["", "  Logins (user / password):"] + [f"    {ln}" for ln in info["logins"]]
        if getattr(self, "run_env", None):
            shown = self.run_env.relative_to(ROOT) if self.run_env.is_relative_to(ROOT) else self.run_env
            out += ["", f"  Other terminals: manage.py and celery read {shown} (Redis, sandbox token, SITE_URL)"]
        out += ["", "  Ctrl-C to stop.", rule]
        for line in out:
            console.say(line)

    def supervise(self):
        while not self.stop_requested():
            dead = self.dead_child()
            if dead:
                self.report_death(dead)
                return 1
            time.sleep(0.25)
        return 0

    # shutdown ---------------------------------------------------------------
    def _stop_group(self, children, timeout):
        children = [c for c in children if c.alive()]
        if not children:
            return
        for c in children:
            c.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.force and any(c.alive() for c in children):
            time.sleep(0.1)
        for c in children:
            if c.alive():
                say(f"{c.name}: SIGKILL" if self.force else f"{c.name} did not stop within {timeout:g} s: SIGKILL")
                c.signal_group(signal.SIGKILL)
        for c in children:
            try:
                c.proc.wait(5)
            except subprocess.TimeoutExpired:
                say(f"{c.name} (pid {c.pid}) is still there after SIGKILL")
            # Leftovers in the group (e.g. pool processes) go too.
            try:
                os.killpg(c.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            c.finish_output()

    def shutdown(self):
        self.stopping = True
        ENVFILES.remove_run_env(os.getpid())
        running = [c for c in self.children + ([self.redis] if self.redis else []) if c.alive()]
        if not running:
            if self.children or self.redis:
                PID_FILE.unlink(missing_ok=True)
            return
        say("stopping " + ", ".join(c.name for c in running))
        # Everything that uses Redis first, then Redis itself.
        self._stop_group(self.children, self.args.stop_timeout)
        if self.redis:
            self._stop_group([self.redis], 5)
        if not any(c.alive() for c in self.children + ([self.redis] if self.redis else [])):
            PID_FILE.unlink(missing_ok=True)
        say("stopped")


def demo_logins(path):
    """The banner's login lines from bootstrap_demo --summary-json."""
    try:
        logins = json.loads(Path(path).read_text(encoding="utf-8"))["logins"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    lines = []
    for login in logins:
        chat = f", Telegram chat {login['chat_id']}" if login.get("chat_id") else ""
        sms = f", SMS {login['sms']}" if login.get("sms") else ""
        lines.append(f"{login['username']} / {login['password']}  ({login['role']}{chat}{sms})")
    return lines


def apply_user_env():
    """.env counts as set for run_all's own decisions (sandbox or not, Redis URL),
    never overriding the real environment."""
    if os.environ.get("CMMS_ENV_FILES", "1").strip().lower() in ("0", "false", "no", "off"):
        return
    for name, value in ENVFILES.read_user_env().items():
        os.environ.setdefault(name, value)


def main(argv=None):
    apply_user_env()
    args = parse_args(argv)
    sup = Supervisor(args)
    sup.install_signal_handlers()
    status = 0
    try:
        sup.preflight()
        info = sup.start()
        if info is None:
            status = 0 if sup.stop_requested() else 1
        else:
            sup.banner(info)
            status = sup.supervise()
    except Fatal as exc:
        say(str(exc))
        status = 1
    except Exception:
        sup.shutdown()
        raise
    sup.shutdown()
    if sup.death:
        say(f"exiting with status 1 because {sup.death} (its last lines are above)")
    return status


if __name__ == "__main__":
    sys.exit(main())

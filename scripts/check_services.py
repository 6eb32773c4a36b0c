#!/usr/bin/env python3
"""Check that the services the tests need are there, and say clearly what is
missing when they are not.

    python scripts/check_services.py --redis --database --broker

--redis     redis-server is on PATH (the tests start a private one) or
            REDIS_URL (default redis://127.0.0.1:6379/0) answers PING.
--database  when DATABASE_URL is a PostgreSQL URL, the server answers and the
            role may create databases (pytest-django creates test_<name>).
--broker    when TEST_BROKER=rabbitmq, rabbitmq-server is installed (the tests
            start a private RabbitMQ node).

Standard library only (psycopg is used for the PostgreSQL check when it is
importable, else pg_isready, else a TCP connect). Also imported by
scripts/run_all.py for ``redis_ping``, ``amqp_ping`` and ``redact_url``.
"""

import argparse
import os
import shutil
import socket
import ssl
import subprocess
import sys
from urllib.parse import unquote, urlsplit, urlunsplit

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "postgis"}


def redact_url(url):
    """The URL with its password replaced by ***, safe to print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def _resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_line(sock):
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        buf += chunk
        if len(buf) > 4096:
            raise ConnectionError("unexpected answer")
    return buf[:-2].decode("utf-8", "replace")


def redis_ping(url, timeout=1.0):
    """(True, "PONG") when the Redis at url answers PING, else (False, reason)."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "unix":
            family, address = socket.AF_UNIX, parts.path
        elif scheme in ("redis", "rediss"):
            family, address = socket.AF_INET, (parts.hostname or "127.0.0.1", parts.port or 6379)
        else:
            return False, f"unsupported scheme {parts.scheme!r} (expected redis://, rediss:// or unix://)"
        password = unquote(parts.password) if parts.password else None
        username = unquote(parts.username) if parts.username else None
    except ValueError as exc:
        return False, f"bad URL: {exc}"
    try:
        if family == socket.AF_UNIX:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(address)
        else:
            sock = socket.create_connection(address, timeout=timeout)
        with sock:
            if scheme == "rediss":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=address[0])
            if password is not None:
                sock.sendall(_resp("AUTH", username, password) if username else _resp("AUTH", password))
                answer = _read_line(sock)
                if not answer.startswith("+"):
                    return False, f"AUTH refused: {answer[1:]}"
            sock.sendall(_resp("PING"))
            answer = _read_line(sock)
    except (OSError, ConnectionError) as exc:
        return False, str(exc) or exc.__class__.__name__
    if answer == "+PONG":
        return True, "PONG"
    return False, f"unexpected answer to PING: {answer}"


AMQP_SCHEMES = {"amqp", "amqps", "pyamqp"}
# The Debian package's own script runs the node as the caller; /usr/sbin's
# wrapper switches to the rabbitmq user. tests/support/processes.py uses it.
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def amqp_ping(url, timeout=1.0):
    """(ok, reason): an AMQP 0-9-1 server answers the protocol header at url's
    host and port with its Connection.Start (no login: nothing is opened)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or (5671 if parts.scheme == "amqps" else 5672)
    except ValueError as exc:
        return False, f"bad URL ({exc})"
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host) if parts.scheme == "amqps" else raw
            sock.settimeout(timeout)
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            head = sock.recv(7)
    except OSError as exc:
        return False, str(exc) or exc.__class__.__name__
    if len(head) == 7 and head[0] == 1:  # a METHOD frame: Connection.Start
        return True, "Connection.Start"
    return False, f"not an AMQP 0-9-1 answer: {head!r}"


def rabbitmq_server_installed():
    if os.access(RABBITMQ_SERVER, os.X_OK):
        return True
    found = shutil.which("rabbitmq-server")
    return bool(found and "/sbin/" not in found)


def check_broker():
    broker = (os.environ.get("TEST_BROKER") or "redis").strip().lower()
    if broker == "redis":
        return True
    if broker != "rabbitmq":
        print(f"TEST_BROKER={broker!r}: use redis (the default) or rabbitmq.", file=sys.stderr)
        return False
    if rabbitmq_server_installed():
        return True
    print(
        "TEST_BROKER=rabbitmq needs rabbitmq-server (apt-get install rabbitmq-server): the tests start a private\n"
        "  RabbitMQ node on free ports and never use the machine's own.",
        file=sys.stderr,
    )
    return False


def check_redis():
    if shutil.which("redis-server"):
        return True
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    ok, reason = redis_ping(url)
    if ok:
        return True
    print(
        "Redis is required: install redis-server (apt-get install redis-server) or set REDIS_URL to a running Redis.\n"
        f"  redis-server is not on PATH, and REDIS_URL={redact_url(url)} does not answer PING ({reason}).",
        file=sys.stderr,
    )
    return False


def check_database():
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        return True
    scheme = urlsplit(url).scheme.lower()
    if scheme not in POSTGRES_SCHEMES:
        return True
    shown = redact_url(url)
    hint = "Start PostgreSQL (or fix DATABASE_URL), or unset DATABASE_URL to run on SQLite."
    try:
        import psycopg  # optional: in the virtualenv, not in a bare system Python
    except ImportError:
        psycopg = None
    if psycopg is not None:
        conninfo = url.replace(f"{scheme}://", "postgresql://", 1)
        try:
            # The maintenance database, not the URL's: the test runner creates
            # test_<name> and does not need <name> itself to exist.
            with psycopg.connect(conninfo, dbname="postgres", connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT rolcreatedb OR rolsuper, current_user FROM pg_roles WHERE rolname = current_user"
                ).fetchone()
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            print(f"Cannot connect to PostgreSQL at DATABASE_URL={shown}: {first}\n  {hint}", file=sys.stderr)
            return False
        if row and not row[0]:
            print(
                f"PostgreSQL role {row[1]!r} may not create databases, and the test runner creates test_<name>.\n"
                f"  Run as a superuser: ALTER ROLE \"{row[1]}\" CREATEDB;",
                file=sys.stderr,
            )
            return False
        return True
    if shutil.which("pg_isready"):
        result = subprocess.run(
            ["pg_isready", "-d", url, "-t", "5"], check=False, capture_output=True, text=True
        )
        if result.returncode == 0:
            return True
        answer = result.stdout.strip()
        print(f"Cannot connect to PostgreSQL at DATABASE_URL={shown}: {answer}\n  {hint}", file=sys.stderr)
        return False
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=5).close()
    except OSError as exc:
        print(f"Cannot connect to PostgreSQL at DATABASE_URL={shown}: {exc}\n  {hint}", file=sys.stderr)
        return False
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", action="store_true", help="require redis-server on PATH or a Redis at REDIS_URL")
    parser.add_argument("--database", action="store_true", help="check DATABASE_URL when it is PostgreSQL")
    parser.add_argument("--broker", action="store_true", help="require rabbitmq-server when TEST_BROKER=rabbitmq")
    args = parser.parse_args(argv)
    ok = True
    if args.broker:
        ok = check_broker() and ok
    if args.redis:
        ok = check_redis() and ok
    if args.database:
        ok = check_database() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Local SMTP capture server (aiosmtpd) and a page to read what it caught,
the way Mailpit does: HTML rendered, text part, headers, attachments.

``make run`` starts it (``python -m sandbox.smtp``); end-to-end tests and the
bench run it in-process. It never relays anything. On demand it refuses a
recipient (550 user unknown, 451 try later), the next transactions, or stops
answering altogether. It is at least as strict as a real provider about the
message: no Message-ID (Gmail refuses those), no Date or From, or a line over
998 characters is a 550.

    SmtpSandbox(port=0, page_port=0, auth={"user": "password"}, relay_domains=["example.com"])
    .start() / .stop() / with ...: ...
    .url                      smtp://127.0.0.1:PORT (EMAIL_URL)
    .page_url                 http://127.0.0.1:PAGE_PORT/
    .messages(to=None)        captured messages (dicts), in arrival order
    .reject(address, code=550, text="5.1.1 User unknown", times=None)
    .reject_next(n, code=451, text="4.3.0 Try again later", stage="DATA")
    .down() / .unresponsive() context managers: connection refused / a server
                              that accepts connections and never answers
    .reset(), .stats()
"""

import argparse
import contextlib
import email
import email.policy
import html
import itertools
import json
import logging
import signal
import socket
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

logger = logging.getLogger("sandbox.smtp")
# aiosmtpd logs every command at INFO, and a bench sends thousands.
logging.getLogger("mail.log").setLevel(logging.WARNING)
# AUTH without TLS is what a loopback stand-in needs to test a refused login.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS", category=UserWarning)
MAX_LINE = 998  # RFC 5322 2.1.1
MAX_STORED = 5000


def _free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, sandbox):
        self.sandbox = sandbox

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.sandbox._lock:
            self.sandbox._stats["ehlo"] += 1
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = self.sandbox._refusal("RCPT", address)
        if refusal:
            return refusal
        domains = self.sandbox.relay_domains
        if domains and address.rpartition("@")[2].lower() not in domains:
            return "550 5.7.1 Relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        refusal = self.sandbox._refusal("DATA", None)
        if refusal:
            return refusal
        return self.sandbox._capture(envelope)


class SmtpSandbox:
    def __init__(self, host="127.0.0.1", port=0, page_port=0, auth=None, relay_domains=None, quiet=True,
                 data_size_limit=10 * 1024 * 1024):
        self.host = host
        self.port = port or _free_port(host)
        self.page_port = page_port
        self.auth = dict(auth or {})
        self.relay_domains = {d.lower() for d in relay_domains or ()}
        self.data_size_limit = data_size_limit
        self.quiet = quiet
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._controller = None
        self._blackhole = None
        self._page = None
        self.reset()

    # -- lifecycle ----------------------------------------------------------------
    @property
    def url(self):
        return f"smtp://{self.host}:{self.port}"

    @property
    def page_url(self):
        return f"http://{self.host}:{self.page_port}/" if self._page else None

    def start(self):
        self._start_smtp()
        if self.page_port is not None and self._page is None:
            self._page = ThreadingHTTPServer((self.host, self.page_port), _page_handler(self))
            self._page.daemon_threads = True
            self.page_port = self._page.server_address[1]
            threading.Thread(target=self._page.serve_forever, name="smtp-page", daemon=True).start()
        return self

    def _start_smtp(self):
        kwargs = {"auth_require_tls": False, "data_size_limit": self.data_size_limit, "enable_SMTPUTF8": True}
        if self.auth:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port,
                                      server_hostname="sandbox.smtp.local", **kwargs)
        self._controller.start()

    def stop(self):
        if self._controller:
            self._controller.stop()
            self._controller = None
        if self._blackhole:
            self._blackhole.close()
            self._blackhole = None
        if self._page:
            self._page.shutdown()
            self._page.server_close()
            self._page = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @contextlib.contextmanager
    def down(self):
        """Nothing listens on the port: connection refused."""
        self._controller.stop()
        self._controller = None
        try:
            yield
        finally:
            self._start_smtp()

    @contextlib.contextmanager
    def unresponsive(self):
        """The port accepts connections (the kernel's backlog) and never sends
        a greeting or any reply, like a wedged server behind a load balancer."""
        self._controller.stop()
        self._controller = None
        self._blackhole = socket.socket()
        self._blackhole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._blackhole.bind((self.host, self.port))
        self._blackhole.listen(128)
        try:
            yield
        finally:
            self._blackhole.close()
            self._blackhole = None
            self._start_smtp()

    # -- control --------------------------------------------------------------------
    def reset(self):
        with self._lock:
            self._messages = []
            self._rules = []
            self._stats = {"ehlo": 0, "transactions": 0, "captured": 0, "refused": {}, "auth_failures": 0}

    def reject(self, address, code=550, text="5.1.1 User unknown", times=None):
        """Answer RCPT TO:<address> with ``code`` (``times`` times; None: always)."""
        with self._lock:
            self._rules.append({"stage": "RCPT", "address": address.lower(), "code": code, "text": text,
                                "left": times})

    def reject_next(self, n=1, code=451, text="4.3.0 Try again later", stage="DATA"):
        """Answer the next ``n`` transactions at ``stage`` (RCPT or DATA) with ``code``."""
        with self._lock:
            self._rules.append({"stage": stage, "address": None, "code": code, "text": text, "left": n})

    def messages(self, to=None):
        with self._lock:
            found = list(self._messages)
        if to is not None:
            found = [m for m in found if to.lower() in (r.lower() for r in m["rcpt_tos"])]
        return found

    def stats(self):
        with self._lock:
            return json.loads(json.dumps(self._stats))

    # -- SMTP side --------------------------------------------------------------------
    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if user in self.auth and self.auth[user] == password:
                return AuthResult(success=True)
        with self._lock:
            self._stats["auth_failures"] += 1
        return AuthResult(success=False, handled=False)

    def _refusal(self, stage, address):
        with self._lock:
            for rule in self._rules:
                if rule["stage"] != stage or rule["left"] == 0:
                    continue
                if rule["address"] is not None and rule["address"] != (address or "").lower():
                    continue
                if rule["left"] is not None:
                    rule["left"] -= 1
                key = str(rule["code"])
                self._stats["refused"][key] = self._stats["refused"].get(key, 0) + 1
                return f"{rule['code']} {rule['text']}"
        return None

    def _capture(self, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        with self._lock:
            self._stats["transactions"] += 1
        if any(len(line) > MAX_LINE for line in raw.split(b"\r\n")):
            return "550 5.6.0 Message has a line longer than 998 characters (RFC 5322)"
        message = email.message_from_bytes(raw, policy=email.policy.default)
        for header, why in (("Message-ID", "5.7.1 Messages missing a valid Message-ID header are not accepted"),
                            ("Date", "5.6.0 Missing Date header"), ("From", "5.6.0 Missing From header")):
            if not message.get(header):
                return f"550 {why}"
        record = _describe(message, raw)
        record.update(id=next(self._ids), mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
                      received_at=time.time())
        with self._lock:
            self._messages.append(record)
            del self._messages[:-MAX_STORED]
            self._stats["captured"] += 1
        if not self.quiet:
            logger.info("captured #%s %s -> %s: %s", record["id"], envelope.mail_from,
                        ", ".join(envelope.rcpt_tos), record["subject"])
        return f"250 2.0.0 Ok: queued as {record['id']}"


def _describe(message, raw):
    text = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    attachments = [
        {"filename": part.get_filename() or "", "content_type": part.get_content_type(),
         "content": part.get_content() if part.get_content_maintype() != "text" else part.get_content().encode()}
        for part in message.iter_attachments()
    ]
    for a in attachments:
        a["size"] = len(a["content"])
    return {
        "subject": str(message.get("Subject", "")),
        "from": str(message.get("From", "")),
        "to": str(message.get("To", "")),
        "headers": [(k, str(v)) for k, v in message.items()],
        "text": text.get_content() if text is not None else None,
        "html": html_part.get_content() if html_part is not None else None,
        "attachments": attachments,
        "raw": raw,
    }


# -- the page ---------------------------------------------------------------------
_STYLE = ("body{font-family:Arial,Helvetica,sans-serif;margin:20px;color:#111827}table{border-collapse:collapse}"
          "td,th{border-bottom:1px solid #e5e7eb;padding:6px 10px;text-align:left;vertical-align:top}"
          "pre{background:#f9fafb;padding:10px;white-space:pre-wrap}iframe{width:100%;height:560px;border:1px solid #ddd}")


def _page_handler(sandbox):
    esc = html.escape

    class Page(BaseHTTPRequestHandler):
        server_version = "cmms-smtp-sandbox"

        def log_message(self, *args):
            pass

        def _send(self, status, body, content_type="text/html; charset=utf-8", extra=()):
            data = body if isinstance(body, bytes) else body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _message(self, message_id):
            return next((m for m in sandbox.messages() if str(m["id"]) == message_id), None)

        def do_POST(self):
            if urlsplit(self.path).path == "/api/reset":
                sandbox.reset()
                return self._send(200, '{"ok": true}', "application/json")
            self._send(404, "not found", "text/plain")

        def do_GET(self):
            path = urlsplit(self.path).path.rstrip("/").split("/")[1:]
            if path in ([], [""]):
                return self._send(200, self._index(parse_qs(urlsplit(self.path).query).get("to", [None])[0]))
            if path == ["api", "messages"]:
                items = [{k: v for k, v in m.items() if k not in ("raw", "attachments")}
                         | {"attachments": [{"filename": a["filename"], "content_type": a["content_type"],
                                             "size": a["size"]} for a in m["attachments"]]}
                         for m in sandbox.messages()]
                return self._send(200, json.dumps({"messages": items}), "application/json")
            if path == ["api", "stats"]:
                return self._send(200, json.dumps(sandbox.stats()), "application/json")
            if path == ["api", "health"]:
                return self._send(200, '{"ok": true}', "application/json")
            if len(path) >= 2 and path[0] == "message" and (message := self._message(path[1])):
                if len(path) == 2:
                    return self._send(200, self._detail(message))
                if path[2:] == ["raw"]:
                    return self._send(200, message["raw"], "text/plain; charset=utf-8")
                if path[2:] == ["html"] and message["html"] is not None:
                    # Served with a CSP that blocks scripts: a message cannot run code in the page.
                    return self._send(200, message["html"], extra=[("Content-Security-Policy", "script-src 'none'")])
                if len(path) == 4 and path[2] == "attachment" and path[3].isdigit():
                    index = int(path[3])
                    if index < len(message["attachments"]):
                        a = message["attachments"][index]
                        name = a["filename"].replace('"', "") or f"attachment-{index}"
                        return self._send(200, a["content"], a["content_type"],
                                          [("Content-Disposition", f'attachment; filename="{name}"')])
            self._send(404, "not found", "text/plain")

        def _index(self, to):
            rows = "".join(
                f'<tr><td><a href="/message/{m["id"]}">#{m["id"]}</a></td>'
                f'<td>{time.strftime("%H:%M:%S", time.localtime(m["received_at"]))}</td>'
                f'<td>{esc(", ".join(m["rcpt_tos"]))}</td><td>{esc(m["subject"])}</td><td>{len(m["attachments"])}</td></tr>'
                for m in reversed(sandbox.messages(to)))
            return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="3">'
                    f"<title>SMTP sandbox</title><style>{_STYLE}</style></head><body><h1>SMTP sandbox</h1>"
                    f"<p>{esc(sandbox.url)} &middot; {len(sandbox.messages())} captured</p>"
                    f"<table><tr><th>#</th><th>time</th><th>to</th><th>subject</th><th>attachments</th></tr>{rows}"
                    "</table></body></html>")

        def _detail(self, m):
            headers = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in m["headers"])
            files = "".join(f'<li><a href="/message/{m["id"]}/attachment/{i}">{esc(a["filename"])}</a> '
                            f'({esc(a["content_type"])}, {a["size"]} bytes)</li>'
                            for i, a in enumerate(m["attachments"])) or "<li>none</li>"
            body_html = (f'<iframe sandbox src="/message/{m["id"]}/html" title="HTML part"></iframe>'
                         if m["html"] is not None else "<p>no HTML part</p>")
            return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{esc(m["subject"])}</title>'
                    f'<style>{_STYLE}</style></head><body><p><a href="/">&larr; all messages</a> &middot; '
                    f'<a href="/message/{m["id"]}/raw">raw</a></p><h1>{esc(m["subject"])}</h1>'
                    f"<h2>HTML</h2>{body_html}<h2>Text</h2><pre>{esc(m['text'] or '')}</pre>"
                    f"<h2>Attachments</h2><ul>{files}</ul><h2>Headers</h2><table>{headers}</table></body></html>")

    return Page


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox.smtp", description="Local SMTP capture server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--page-port", type=int, default=8025)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sandbox = SmtpSandbox(args.host, args.port, args.page_port, quiet=args.quiet).start()
    print(f"SMTP sandbox listening on {sandbox.url} (captured mail: {sandbox.page_url})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

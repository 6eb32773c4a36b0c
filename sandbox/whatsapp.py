"""WhatsApp Cloud API sandbox: ``python -m sandbox.whatsapp``.

Speaks the part of Meta's Graph API the product uses, at least as strictly:

- ``POST /<version>/<phone_number_id>/messages`` with ``Authorization: Bearer``
  (wrong token: 401, code 190). Text, interactive reply buttons and template
  bodies are validated as Meta does (at most 3 buttons, titles of at most 20
  characters and unique, ids of at most 256; body lengths; template name and
  language approved, the number of body parameters, no newline/tab/5 spaces
  in a parameter: codes 100, 131008, 131009, 132000, 132001, 132018).
- The 24-hour window per user: a free-form message to a user who has not
  written within the window fails with 131047, by default later in a
  ``failed`` status webhook (as Meta does), or at once (``reengagement:
  "sync"``).
- Throughput per business number (80/s, burst 27: 130429) and per user
  (pair rate: 131056), and any error code on demand for one number
  (``POST /_sandbox/errors``).
- Signed status webhooks (``sent``, ``delivered``; ``read`` when the page
  shows the conversation or on demand) posted to ``webhook_url`` after
  ``status_delay_s``, batched like Meta's, retried when refused.
- A page (``/``) listing each phone's conversation, where a person replies
  or presses a button; the same through ``POST /_sandbox/inbound``.

Standard library only; loopback webhooks only.
"""

import argparse
import hashlib
import heapq
import hmac
import html
import itertools
import json
import logging
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .ratelimit import FloodLimiter

log = logging.getLogger("sandbox.whatsapp")
DEFAULT_TOKEN = "sandbox-whatsapp-token"
DEFAULT_PHONE_NUMBER_ID = "100200300400500"
DEFAULT_APP_SECRET = "sandbox-whatsapp-app-secret"
BUSINESS_NUMBER = "56900000000"
# Approved in the sandbox's "WhatsApp Manager": (name, language) -> body and quick replies.
DEFAULT_TEMPLATES = {
    ("cmms_orden_asignada", "es"): {
        "body": "📋 Nueva orden de trabajo {{1}}: {{2}}. Equipo: {{3}}. Vence: {{4}}.",
        "quick_replies": ["✅ Aceptar", "❌ Rechazar"],
    },
    ("cmms_aviso", "es"): {"body": "{{1}}: {{2}}", "quick_replies": []},
}
DEFAULT_CONFIG = {
    "access_token": DEFAULT_TOKEN,
    "phone_number_id": DEFAULT_PHONE_NUMBER_ID,
    "app_secret": DEFAULT_APP_SECRET,
    "webhook_url": "",
    "status_delay_s": 0.2,
    "deliver": True,  # post "delivered" after "sent"
    "window_s": 24 * 3600.0,
    "reengagement": "async",  # or "sync": 131047 in the answer
    "throughput_per_s": 80.0,
    # A third of a second of tolerance (the Telegram sandbox allows 10 at
    # 30/s): requests paced right but scheduled late on a busy machine arrive
    # together, and Meta does not document a tighter burst.
    "throughput_burst": 27,
    "pair_per_s": 1 / 6,
    "pair_burst": 10,
    "latency_ms": 0.0,
}
ERRORS = {
    100: (400, "Invalid parameter"),
    190: (401, "Error validating access token: Session has expired"),
    130429: (400, "Rate limit hit: cloud API message throughput has been reached."),
    131000: (500, "Something went wrong"),
    131008: (400, "Required parameter is missing"),
    131009: (400, "Parameter value is not valid"),
    131026: (400, "Message undeliverable"),
    131047: (400, "Re-engagement message"),
    131056: (400, "(Business Account, Consumer Account) pair rate limit hit"),
    132000: (400, "Number of parameters does not match the expected number of params"),
    132001: (400, "Template name does not exist in the translation"),
    132018: (400, "There was an issue with the parameters in your template."),
}
_PHONE = re.compile(r"^[1-9]\d{7,14}$")
_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")


class ApiError(Exception):
    def __init__(self, code, details="", status=None):
        http_status, message = ERRORS.get(code, (400, "Error"))
        super().__init__(f"({code}) {message}")
        self.code, self.details, self.status, self.message = code, details, status or http_status, message

    def body(self):
        return {"error": {"message": f"(#{self.code}) {self.message}", "type": "OAuthException", "code": self.code,
                          "error_data": {"messaging_product": "whatsapp", "details": self.details},
                          "fbtrace_id": "sandbox"}}


def sign(secret, raw):
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


class WhatsAppSandbox:
    def __init__(self, host="127.0.0.1", port=0, **config):
        self.host, self._port = host, port
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._server = self._thread = self._poster = None
        self._stopping = False
        self.reset(config=True)
        self.configure(**config)

    # -- life cycle ---------------------------------------------------------------
    def start(self):
        self._server = _Server((self.host, self._port), self)
        self._stopping = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="whatsapp-sandbox", daemon=True)
        self._thread.start()
        self._poster = threading.Thread(target=self._post_loop, name="whatsapp-webhooks", daemon=True)
        self._poster.start()
        return self

    def stop(self):
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self):
        return f"{self.url}/v21.0"

    # -- state ----------------------------------------------------------------------
    def reset(self, config=False):
        with self._lock:
            if config:
                self.config = dict(DEFAULT_CONFIG)
                self.templates = {k: dict(v) for k, v in DEFAULT_TEMPLATES.items()}
            self.messages = []  # everything, both directions, in order
            self.by_id = {}
            self.windows = {}  # phone -> time of the user's last message
            self.errors = {}  # phone or "*" -> [{"code", "times", "async"}]
            self.webhook_log = []
            self.counts = {"accepted": 0, "rejected": 0, "by_code": {}}
            self._queue = []
            self._limiter = FloodLimiter()

    def configure(self, **changes):
        with self._lock:
            unknown = set(changes) - set(DEFAULT_CONFIG)
            if unknown:
                raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
            url = changes.get("webhook_url")
            if url and urllib.parse.urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
                raise ValueError("webhooks must be on a loopback address")
            self.config.update(changes)
            return dict(self.config)

    def add_template(self, name, language, body, quick_replies=()):
        with self._lock:
            self.templates[(name, language)] = {"body": body, "quick_replies": list(quick_replies)}

    def fail_next(self, phone="*", code=131000, times=1, asynchronous=False):
        """The next ``times`` sends to ``phone`` ("*": any) fail with ``code``,
        in the answer or (asynchronous) in a ``failed`` status webhook."""
        with self._lock:
            if code not in ERRORS:
                raise ValueError(f"unknown error code {code}; known: {sorted(ERRORS)}")
            self.errors.setdefault(str(phone).lstrip("+"), []).append(
                {"code": int(code), "times": int(times), "async": bool(asynchronous)})

    def open_window(self, phone, at=None):
        with self._lock:
            self.windows[str(phone).lstrip("+")] = time.time() if at is None else at

    def sent(self, to=None):
        """Business messages in order (to one phone when given)."""
        with self._lock:
            return [dict(m) for m in self.messages
                    if m["direction"] == "out" and (to is None or m["to"] == str(to).lstrip("+"))]

    def conversation(self, phone):
        phone = str(phone).lstrip("+")
        with self._lock:
            return [dict(m) for m in self.messages if phone in (m.get("to"), m.get("from"))]

    def phones(self):
        with self._lock:
            return sorted({m.get("to") or m.get("from") for m in self.messages})

    def webhooks(self):
        with self._lock:
            return [dict(w) for w in self.webhook_log]

    # -- the Cloud API --------------------------------------------------------------
    def handle_send(self, phone_number_id, authorization, body):
        """(HTTP status, answer) for POST /<version>/<phone_number_id>/messages."""
        with self._lock:
            config = dict(self.config)
        if config["latency_ms"]:
            time.sleep(config["latency_ms"] / 1000)
        try:
            token = authorization[7:] if authorization.startswith("Bearer ") else ""
            if not hmac.compare_digest(token.encode(), config["access_token"].encode()):
                raise ApiError(190, "Invalid OAuth access token.")
            if phone_number_id != config["phone_number_id"]:
                raise ApiError(100, f"Unsupported post request. Object with ID '{phone_number_id}' does not exist.")
            message = self._validate(body)
            return 200, self._accept(message, config)
        except ApiError as exc:
            with self._lock:
                self.counts["rejected"] += 1
                self.counts["by_code"][exc.code] = self.counts["by_code"].get(exc.code, 0) + 1
            return exc.status, exc.body()

    def _validate(self, body):
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            raise ApiError(100, "messaging_product must be 'whatsapp'.")
        to = str(body.get("to") or "")
        if not _PHONE.match(to):
            raise ApiError(100, f"'to' must be a phone number in international format without '+': {to[:20]!r}")
        kind = body.get("type", "text")
        content = body.get(kind)
        if not isinstance(content, dict):
            raise ApiError(131008, f"'{kind}' object is required.")
        message = {"to": to, "type": kind, "direction": "out"}
        if kind == "text":
            text = content.get("body")
            if not isinstance(text, str) or not text.strip():
                raise ApiError(131008, "text.body is required.")
            if len(text) > 4096:
                raise ApiError(100, "text.body is longer than 4096 characters.")
            message["text"] = text
        elif kind == "interactive":
            message.update(self._validate_interactive(content))
        elif kind == "template":
            message.update(self._validate_template(content))
        else:
            raise ApiError(131009, f"message type {kind!r} is not supported by this sandbox.")
        return message

    @staticmethod
    def _validate_interactive(content):
        if content.get("type") != "button":
            raise ApiError(131009, "interactive.type must be 'button' (reply buttons).")
        text = (content.get("body") or {}).get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(131008, "interactive.body.text is required.")
        if len(text) > 1024:
            raise ApiError(131009, "interactive.body.text is longer than 1024 characters.")
        buttons = (content.get("action") or {}).get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            raise ApiError(131009, "action.buttons must have 1 to 3 buttons.")
        titles, ids, clean = set(), set(), []
        for button in buttons:
            reply = (button or {}).get("reply") or {}
            title, bid = reply.get("title"), reply.get("id")
            if button.get("type") != "reply" or not isinstance(title, str) or not isinstance(bid, str):
                raise ApiError(131008, "each button needs type 'reply' and reply.id and reply.title.")
            if not title.strip() or len(title) > 20:
                raise ApiError(131009, f"button title {title!r} must be 1 to 20 characters.")
            if not bid or len(bid) > 256:
                raise ApiError(131009, "button id must be 1 to 256 characters.")
            if title in titles or bid in ids:
                raise ApiError(131009, "button titles and ids must be unique.")
            titles.add(title)
            ids.add(bid)
            clean.append({"id": bid, "title": title})
        return {"text": text, "buttons": clean}

    def _validate_template(self, content):
        name, language = content.get("name"), (content.get("language") or {}).get("code")
        with self._lock:
            approved = self.templates.get((name, language))
        if approved is None:
            raise ApiError(132001, f"template name ({name}) does not exist in {language}")
        expected = {int(n) for n in _PLACEHOLDER.findall(approved["body"])}
        params, payloads = [], {}
        for component in content.get("components") or []:
            if component.get("type") == "body":
                for p in component.get("parameters") or []:
                    text = p.get("text") if p.get("type") == "text" else None
                    if not isinstance(text, str) or not text:
                        raise ApiError(131008, "body parameters need type 'text' and a non-empty text.")
                    if "\n" in text or "\t" in text or "     " in text:
                        raise ApiError(132018, "Param text cannot have new-line/tab characters or more than 4 "
                                               "consecutive spaces.")
                    params.append(text)
            elif component.get("type") == "button":
                try:
                    index = int(component.get("index"))
                except (TypeError, ValueError):
                    raise ApiError(131008, "button component needs an index.") from None
                if component.get("sub_type") != "quick_reply" or not 0 <= index < len(approved["quick_replies"]):
                    raise ApiError(131009, f"template {name} has no quick-reply button {index}.")
                payload = ((component.get("parameters") or [{}])[0]).get("payload")
                if not isinstance(payload, str) or not payload or len(payload) > 256:
                    raise ApiError(131009, "quick-reply payload must be 1 to 256 characters.")
                payloads[index] = payload
        if len(params) != len(expected):
            raise ApiError(132000, f"expected number of params ({len(expected)}) does not match received "
                                   f"number of params ({len(params)})")
        text = _PLACEHOLDER.sub(lambda m: params[int(m[1]) - 1] if int(m[1]) <= len(params) else "", approved["body"])
        buttons = [{"id": payloads.get(i, title), "title": title} for i, title in enumerate(approved["quick_replies"])]
        return {"text": text, "template": {"name": name, "language": language, "parameters": params},
                "buttons": buttons}

    def _accept(self, message, config):
        now = time.time()
        to = message["to"]
        with self._lock:
            failure = self._injected(to)
            if failure and not failure["async"]:
                raise ApiError(failure["code"], "injected by the sandbox's control API")
            wait = self._limiter.check(
                [(f"number:{config['phone_number_id']}", config["throughput_per_s"], config["throughput_burst"])],
                time.monotonic())
            if wait:
                raise ApiError(130429, "throughput of the business number exceeded")
            wait = self._limiter.check([(f"pair:{to}", config["pair_per_s"], config["pair_burst"])],
                                       time.monotonic())
            if wait:
                raise ApiError(131056, f"too many messages to {to}")
            late = None
            if message["type"] != "template" and now - self.windows.get(to, -1e18) > config["window_s"]:
                if config["reengagement"] == "sync":
                    raise ApiError(131047, "Message failed to send because more than 24 hours have passed since "
                                           "the customer last replied to this number.")
                late = 131047
            if failure:
                late = failure["code"]
            wamid = f"wamid.SANDBOX{next(self._ids):010d}"
            message.update(id=wamid, at=now, status="accepted", error=late)
            self.messages.append(message)
            self.by_id[wamid] = message
            self.counts["accepted"] += 1
            delay = config["status_delay_s"]
            if late:
                self._schedule(now + delay, self._status(message, "failed", code=late))
            else:
                self._schedule(now + delay, self._status(message, "sent"))
                if config["deliver"]:
                    self._schedule(now + 2 * delay, self._status(message, "delivered"))
        return {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": wamid}]}

    def _injected(self, to):
        for key in (to, "*"):
            queue = self.errors.get(key) or []
            if queue:
                failure = queue[0]
                failure["times"] -= 1
                if failure["times"] <= 0:
                    queue.pop(0)
                return failure
        return None

    def _status(self, message, state, code=None):
        if state in ("sent", "delivered", "read", "failed"):
            message["status"] = state if _RANK.get(state, 0) >= _RANK.get(message.get("status"), 0) else \
                message["status"]
        status = {"id": message["id"], "status": state, "timestamp": str(int(time.time())),
                  "recipient_id": message["to"]}
        if state == "sent":
            status["conversation"] = {"id": "sandbox-conversation", "origin": {
                "type": "marketing" if message["type"] == "template" else "service"}}
            status["pricing"] = {"billable": True, "pricing_model": "CBP",
                                 "category": "marketing" if message["type"] == "template" else "service"}
        if code:
            _status, text = ERRORS.get(code, (400, "Error"))
            status["errors"] = [{"code": code, "title": text, "message": text,
                                 "error_data": {"details": text}}]
        return {"statuses": [status]}

    # -- people ---------------------------------------------------------------------
    def user_message(self, phone, text=None, button_id=None, name="Técnico"):
        """A person writes (``text``) or presses a button of one of the
        messages sent to them (``button_id``); opens their window and posts
        the message webhook. Returns the inbound message."""
        phone = str(phone).lstrip("+")
        now = time.time()
        with self._lock:
            message = {"from": phone, "id": f"wamid.IN{next(self._ids):010d}", "timestamp": str(int(now))}
            if button_id is not None:
                carrier = next((m for m in reversed(self.messages) if m["direction"] == "out" and m["to"] == phone
                                and any(b["id"] == button_id for b in m.get("buttons") or [])), None)
                if carrier is None:
                    raise ValueError(f"no message to {phone} has a button with id {button_id!r}")
                title = next(b["title"] for b in carrier["buttons"] if b["id"] == button_id)
                message["context"] = {"from": BUSINESS_NUMBER, "id": carrier["id"]}
                if carrier["type"] == "template":
                    message.update(type="button", button={"payload": button_id, "text": title})
                else:
                    message.update(type="interactive",
                                   interactive={"type": "button_reply", "button_reply": {"id": button_id,
                                                                                         "title": title}})
                shown = title
            else:
                if not str(text or "").strip():
                    raise ValueError("a message needs text or a button_id")
                message.update(type="text", text={"body": str(text)})
                shown = str(text)
            self.windows[phone] = now
            self.messages.append({"direction": "in", "from": phone, "id": message["id"], "at": now,
                                  "type": message["type"], "text": shown})
            self._schedule(now, {"contacts": [{"profile": {"name": name}, "wa_id": phone}],
                                 "messages": [message]})
        return message

    def mark_read(self, phone=None, wamid=None):
        """The person opened the conversation: ``read`` for what was delivered."""
        now = time.time()
        with self._lock:
            for m in self.messages:
                if m["direction"] == "out" and (wamid == m["id"] or (wamid is None and m["to"] == phone)) \
                        and m.get("status") in ("sent", "delivered"):
                    self._schedule(now + self.config["status_delay_s"], self._status(m, "read"))

    def post_status(self, wamid, state, code=None):
        """Post one status webhook for a sent message now (out of order on purpose, if you like)."""
        with self._lock:
            message = self.by_id.get(wamid)
            if message is None:
                raise ValueError(f"no message {wamid}")
            self._schedule(time.time(), self._status(message, state, code=code))

    # -- webhooks -------------------------------------------------------------------
    def _schedule(self, due, value):
        heapq.heappush(self._queue, (due, next(self._ids), value, 0))
        self._wake.notify_all()

    def _post_loop(self):
        while True:
            with self._lock:
                while not self._stopping and (not self._queue or self._queue[0][0] > time.time()):
                    timeout = self._queue[0][0] - time.time() if self._queue else None
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                batch = []
                while self._queue and self._queue[0][0] <= time.time() and len(batch) < 50:
                    batch.append(heapq.heappop(self._queue))
                url, secret = self.config["webhook_url"], self.config["app_secret"]
                number = self.config["phone_number_id"]
            if not url:
                continue
            self._post(url, secret, number, batch)

    def _post(self, url, secret, number, batch):
        value = {"messaging_product": "whatsapp",
                 "metadata": {"display_phone_number": BUSINESS_NUMBER, "phone_number_id": number}}
        for _due, _seq, item, _tries in batch:
            for key, entries in item.items():
                value.setdefault(key, []).extend(entries)
        body = {"object": "whatsapp_business_account",
                "entry": [{"id": "sandbox-waba", "changes": [{"field": "messages", "value": value}]}]}
        raw = json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(url, data=raw, method="POST", headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, raw)})
        started = time.time()
        try:
            with _DIRECT.open(request, timeout=10) as response:
                code = response.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except (urllib.error.URLError, OSError) as exc:
            code = f"{type(exc).__name__}"
        with self._lock:
            self.webhook_log.append({"at": started, "answered_in_s": time.time() - started, "status": code,
                                     "body": body})
            if len(self.webhook_log) > 5000:
                del self.webhook_log[:1000]
            if code != 200:  # Meta retries with backoff; so do we, a few times
                for _due, seq, item, tries in batch:
                    if tries < 3:
                        heapq.heappush(self._queue, (time.time() + 2 ** tries, seq, item, tries + 1))
                self._wake.notify_all()


_RANK = {"accepted": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- HTTP -------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address, sandbox):
        self.sandbox = sandbox
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "WhatsAppSandbox/1"

    def log_message(self, fmt, *args):
        log.info("%s %s", self.address_string(), fmt % args)

    @property
    def sandbox(self):
        return self.server.sandbox

    def _answer(self, status, body, content_type="application/json"):
        raw = body if isinstance(body, bytes) else (
            json.dumps(body, ensure_ascii=False).encode() if content_type == "application/json" else body.encode())
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _redirect(self, location):
        self.send_response(303)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        path, _sep, query = self.path.partition("?")
        params = urllib.parse.parse_qs(query)
        if path == "/":
            return self._answer(200, _index_page(self.sandbox), "text/html")
        if path.startswith("/chat/"):
            phone = urllib.parse.unquote(path[len("/chat/"):])
            self.sandbox.mark_read(phone=phone)
            return self._answer(200, _chat_page(self.sandbox, phone), "text/html")
        if path == "/_sandbox/messages":
            to = (params.get("to") or [None])[0]
            return self._answer(200, {"messages": self.sandbox.sent(to)})
        if path == "/_sandbox/webhooks":
            return self._answer(200, {"webhooks": self.sandbox.webhooks()})
        if path == "/_sandbox/config":
            return self._answer(200, self.sandbox.config)
        if path == "/_sandbox/stats":
            return self._answer(200, self.sandbox.counts)
        return self._answer(404, {"error": {"message": "Unknown path", "code": 100}})

    def do_POST(self):
        path = self.path.partition("?")[0]
        raw = self._body()
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0].startswith("v") and parts[2] == "messages":
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                return self._answer(400, ApiError(100, "the body is not JSON").body())
            status, answer = self.sandbox.handle_send(parts[1], self.headers.get("Authorization", ""), body)
            return self._answer(status, answer)
        if path.startswith("/chat/"):  # the page's forms
            phone = urllib.parse.unquote(path[len("/chat/"):])
            form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
            try:
                self.sandbox.user_message(phone, text=form.get("text"), button_id=form.get("button_id"))
            except ValueError as exc:
                return self._answer(400, html.escape(str(exc)), "text/plain")
            return self._redirect(f"/chat/{urllib.parse.quote(phone)}")
        try:
            data = json.loads(raw or b"{}")
            return self._answer(200, self._control(path, data))
        except (ValueError, TypeError, KeyError) as exc:
            return self._answer(400, {"ok": False, "error": str(exc)})

    def _control(self, path, data):
        sandbox = self.sandbox
        if path == "/_sandbox/reset":
            sandbox.reset(config=bool(data.get("config")))
        elif path == "/_sandbox/config":
            return sandbox.configure(**data)
        elif path == "/_sandbox/errors":
            sandbox.fail_next(data.get("phone", "*"), int(data["code"]), int(data.get("times", 1)),
                              bool(data.get("async")))
        elif path == "/_sandbox/inbound":
            return {"message": sandbox.user_message(data["from"], text=data.get("text"),
                                                    button_id=data.get("button_id"))}
        elif path == "/_sandbox/window":
            sandbox.open_window(data["phone"], data.get("at"))
        elif path == "/_sandbox/status":
            sandbox.post_status(data["id"], data["status"], data.get("code"))
        elif path == "/_sandbox/templates":
            sandbox.add_template(data["name"], data["language"], data["body"], data.get("quick_replies", ()))
        else:
            raise KeyError(f"unknown control path {path}")
        return {"ok": True}


# -- the page ----------------------------------------------------------------------
_STYLE = ("body{font-family:sans-serif;max-width:46rem;margin:1rem auto;background:#ece5dd}"
          ".m{margin:.4rem 0;padding:.5rem .7rem;border-radius:.5rem;max-width:80%;white-space:pre-wrap}"
          ".out{background:#fff}.in{background:#dcf8c6;margin-left:auto}.meta{font-size:.75rem;color:#667}"
          "button{margin:.2rem}")


def _index_page(sandbox):
    phones = sandbox.phones()
    items = "".join(f'<li><a href="/chat/{html.escape(p)}">+{html.escape(p)}</a></li>' for p in phones) or \
        "<li>No conversations yet.</li>"
    return (f"<!doctype html><meta charset=utf-8><title>WhatsApp sandbox</title><style>{_STYLE}</style>"
            f"<h1>WhatsApp sandbox</h1><p>Cloud API at <code>{html.escape(sandbox.api_url)}</code>; webhooks to "
            f"<code>{html.escape(sandbox.config['webhook_url'] or '(none)')}</code>.</p><ul>{items}</ul>"
            '<form method=get onsubmit="location=\'/chat/\'+this.p.value.replace(\'+\',\'\');return false">'
            "<input name=p placeholder='56987654321'><button>Open a chat</button></form>")


def _chat_page(sandbox, phone):
    rows = []
    for m in sandbox.conversation(phone):
        who = "out" if m["direction"] == "out" else "in"
        meta = m["type"] + (f" · {m.get('status')}" if who == "out" else "")
        if m.get("error"):
            meta += f" · error {m['error']}"
        buttons = "".join(
            f'<form method=post style="display:inline"><input type=hidden name=button_id '
            f'value="{html.escape(b["id"], quote=True)}"><button>{html.escape(b["title"])}</button></form>'
            for b in m.get("buttons") or [])
        rows.append(f'<div class="m {who}">{html.escape(m.get("text") or "")}<div>{buttons}</div>'
                    f'<div class=meta>{html.escape(meta)}</div></div>')
    safe = html.escape(phone)
    return (f"<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=3><title>+{safe}</title>"
            f"<style>{_STYLE}</style><p><a href='/'>← all phones</a></p><h1>+{safe}</h1>{''.join(rows)}"
            "<form method=post><input name=text placeholder='Escribe un mensaje' size=40 autofocus>"
            "<button>Enviar</button></form>")


# -- python -m sandbox.whatsapp ------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox.whatsapp", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--webhook-url", default="")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--phone-number-id", default=DEFAULT_PHONE_NUMBER_ID)
    parser.add_argument("--app-secret", default=DEFAULT_APP_SECRET)
    parser.add_argument("--status-delay-s", type=float, default=DEFAULT_CONFIG["status_delay_s"])
    parser.add_argument("--throughput", type=float, default=DEFAULT_CONFIG["throughput_per_s"])
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    sandbox = WhatsAppSandbox(host=args.host, port=args.port, webhook_url=args.webhook_url,
                              access_token=args.token, phone_number_id=args.phone_number_id,
                              app_secret=args.app_secret, status_delay_s=args.status_delay_s,
                              throughput_per_s=args.throughput)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sandbox.start()
    print(f"WhatsApp sandbox listening on {sandbox.url} (API {sandbox.api_url}, chat page: {sandbox.url}/)",
          flush=True)
    while not stop.wait(1.0):
        pass
    sandbox.stop()
    print("WhatsApp sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

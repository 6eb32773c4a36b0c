"""Twilio sandbox: the Messages API calls we use, signed status callbacks and
inbound SMS, on 127.0.0.1. Standard library only, like the Telegram sandbox.

    python -m sandbox.twilio [--port 8082] [--inbound-url URL] [--callback-delay-s 0.3]

* ``POST /2010-04-01/Accounts/<AccountSid>/Messages.json``: HTTP Basic with
  the account SID and auth token (401, code 20003, otherwise), form-encoded
  only, ``To`` in E.164 (21211), ``From`` or ``MessagingServiceSid`` (21603),
  ``Body`` of 1-1600 characters (21602, 21617), a per-sender pace in segments
  per second (20429 when exceeded); a number's state (``/_sandbox/numbers``)
  forces 21211 or 21610. Answers 201 with ``sid``, ``status: queued``,
  ``num_segments``, ``price``. ``GET .../Messages/<sid>.json`` fetches one.
* After ``callback_delay_s`` it POSTs the ``StatusCallback`` with ``sent``,
  then after ``delivered_delay_s`` ``delivered`` (or ``undelivered`` 30003 /
  ``failed`` 30008 for a number set so), signed with ``X-Twilio-Signature``
  (base64 HMAC-SHA1 of the URL and the sorted parameters, keyed by the auth
  token). ``callback_order: "reversed"`` sends them last first, and
  ``callback_repeat: 2`` sends each twice (Twilio delivers at least once).
* An inbound SMS (``POST /_sandbox/inbound`` or the phone page's form) is
  POSTed, signed, to ``inbound_url``. STOP/START from a phone stops/starts
  our sends to it (21610), as Twilio's opt-out handling does.
* ``GET /`` lists the phones; ``GET /phone/<number>`` shows a phone's
  messages and lets a person send an SMS from it.
* Control API under ``/_sandbox/``: ``health``, ``reset``, ``config``,
  ``numbers``, ``messages[?to=]``, ``callbacks``, ``stats``, ``inbound``.
"""

import argparse
import base64
import hashlib
import heapq
import hmac
import html
import json
import logging
import math
import re
import secrets
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("sandbox.twilio")

DEFAULT_ACCOUNT_SID = "AC" + "0" * 31 + "1"
DEFAULT_AUTH_TOKEN = "sandbox-twilio-auth-token-0001"
DEFAULT_FROM = "+15005550006"
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
MAX_BODY = 1600
_RANK = {"queued": 0, "sent": 1, "delivered": 2, "undelivered": 2, "failed": 2}
NUMBER_STATES = ("ok", "invalid", "stopped", "undelivered", "failed")
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
START_WORDS = {"START", "YES", "UNSTOP"}
_GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
            "abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM7_EXT = set("^{}\\[~]|€\f")

DEFAULT_CONFIG = {
    "callback_delay_s": 0.3,
    "delivered_delay_s": 0.3,
    "callback_order": "normal",  # or "reversed"
    "callback_repeat": 1,
    "callback_timeout_s": 5.0,
    "limits_enabled": True,
    "sender_rate": 1.0,  # segments per second per From number / messaging service
    "sender_burst": 3,
    "latency_ms": 0.0,
    "inbound_url": "",
    "price_per_segment": "-0.00750",
    "price_unit": "USD",
    "force_429": 0,  # the next N sends answer 20429
    "force_500": 0,  # the next N sends answer 500 (code 20500), without sending
    "auth_ok": True,  # False: every API call answers 401 (a revoked token)
}


def segments(text):
    """(encoding, count), counted as Twilio does (an independent copy of the
    product's rule, so each checks the other)."""
    if all(c in _GSM7 or c in _GSM7_EXT for c in text):
        units = sum(2 if c in _GSM7_EXT else 1 for c in text)
        return "GSM-7", 1 if units <= 160 else math.ceil(units / 153)
    units = len(text.encode("utf-16-le")) // 2
    return "UCS-2", 1 if units <= 70 else math.ceil(units / 67)


def sign(auth_token, url, params):
    data = url + "".join(f"{k}{v}" for k in sorted(params) for v in sorted({params[k]}))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self):
        return {"code": self.code, "message": self.message, "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
                "status": self.status}


class TwilioSandbox:
    def __init__(self, host="127.0.0.1", port=0, account_sid=DEFAULT_ACCOUNT_SID, auth_token=DEFAULT_AUTH_TOKEN,
                 **config):
        self.host, self.requested_port = host, port
        self.account_sid, self.auth_token = account_sid, auth_token
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._config = dict(DEFAULT_CONFIG)
        self._check_config(config)
        self._config.update(config)
        self._reset_state()
        self._server = None
        self._threads = []
        self._stopping = False
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _reset_state(self):
        self._messages = []  # outgoing (API) and inbound, in arrival order
        self._by_sid = {}
        self._numbers = {}
        self._callbacks = []
        self._pending = []  # heap of (due, seq, url, params)
        self._seq = 0
        self._tat = {}
        self._stats = {"requests": 0, "responses_by_status": {}, "errors_by_code": {}, "callbacks_sent": 0,
                       "callbacks_failed": 0, "inbound_sent": 0}

    # -- lifecycle -------------------------------------------------------------
    def start(self):
        handler = type("Handler", (_Handler,), {"sandbox": self})
        self._server = ThreadingHTTPServer((self.host, self.requested_port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        for target in (self._server.serve_forever, self._callback_loop):
            thread = threading.Thread(target=target, daemon=True, name=f"twilio-sandbox-{target.__name__}")
            thread.start()
            self._threads.append(thread)
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
    def messages_url(self):
        return f"{self.url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    # -- control -----------------------------------------------------------------
    def _check_config(self, changes):
        unknown = set(changes) - set(DEFAULT_CONFIG)
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
        if changes.get("callback_order", "normal") not in ("normal", "reversed"):
            raise ValueError("callback_order must be 'normal' or 'reversed'")

    def configure(self, **changes):
        self._check_config(changes)
        with self._lock:
            self._config.update(changes)
            return dict(self._config)

    def get_config(self):
        with self._lock:
            return dict(self._config)

    def reset(self, config=False):
        with self._lock:
            self._reset_state()
            if config:
                self._config = dict(DEFAULT_CONFIG)

    def set_number(self, number, state="ok"):
        if state not in NUMBER_STATES:
            raise ValueError(f"state must be one of {', '.join(NUMBER_STATES)}")
        with self._lock:
            self._numbers[number] = state

    def numbers(self):
        with self._lock:
            return dict(self._numbers)

    def messages(self, to=None):
        with self._lock:
            return [dict(m) for m in self._messages if to is None or to in (m["to"], m["from"])]

    def callbacks(self):
        with self._lock:
            return [dict(c) for c in self._callbacks]

    def stats(self):
        with self._lock:
            return json.loads(json.dumps(self._stats))

    # -- the Messages API ----------------------------------------------------------
    def create_message(self, account_sid, auth_header, content_type, body):
        with self._lock:
            self._stats["requests"] += 1
            config = dict(self._config)
        try:
            self._authenticate(account_sid, auth_header, config)
            if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
                raise ApiError(400, 20001, "Parameters must be form-encoded (application/x-www-form-urlencoded).")
            params = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            message = self._accept(params, config)
        except ApiError as exc:
            with self._lock:
                self._count(exc.status, exc.code)
            return exc.status, exc.body()
        with self._lock:
            self._count(201)
        return 201, self._resource(message)

    def fetch_message(self, account_sid, auth_header, sid):
        try:
            self._authenticate(account_sid, auth_header, self.get_config())
            with self._lock:
                message = self._by_sid.get(sid)
                if message is None:
                    raise ApiError(404, 20404, f"The requested resource /Messages/{sid}.json was not found")
                return 200, self._resource(message)
        except ApiError as exc:
            return exc.status, exc.body()

    def _authenticate(self, account_sid, header, config):
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if not config["auth_ok"] or not hmac.compare_digest(str(header or ""), expected) \
                or account_sid != self.account_sid:
            raise ApiError(401, 20003, "Authenticate")

    def _accept(self, params, config):
        to, sender, service = params.get("To", ""), params.get("From", ""), params.get("MessagingServiceSid", "")
        text = params.get("Body", "")
        if not to:
            raise ApiError(400, 21604, "A 'To' phone number is required.")
        if not E164.match(to):
            raise ApiError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender and not service:
            raise ApiError(400, 21603, "A 'From' phone number is required.")
        if sender and not E164.match(sender):
            raise ApiError(400, 21212, f"The 'From' number {sender} is not a valid phone number.")
        if not text:
            raise ApiError(400, 21602, "Message body is required.")
        if len(text) > MAX_BODY:
            raise ApiError(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        callback = params.get("StatusCallback", "")
        if callback and not callback.startswith(("http://", "https://")):
            raise ApiError(400, 21609, f"Invalid StatusCallback URL {callback}.")
        encoding, count = segments(text)
        with self._lock:
            state = self._numbers.get(to, "ok")
            if state == "invalid":
                raise ApiError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
            if state == "stopped":
                raise ApiError(400, 21610, "Attempt to send to unsubscribed recipient")
            if self._config["force_500"] > 0:
                self._config["force_500"] -= 1
                raise ApiError(500, 20500, "Internal Server Error")
            if self._config["force_429"] > 0:
                self._config["force_429"] -= 1
                raise ApiError(429, 20429, "Too Many Requests")
            if config["limits_enabled"] and not self._take(sender or service, count, config):
                raise ApiError(429, 20429, "Too Many Requests")
            sid = "SM" + secrets.token_hex(16)
            now = time.time()
            price = f"{float(config['price_per_segment']) * count:.5f}"
            message = {"sid": sid, "direction": "outbound-api", "to": to, "from": sender, "messaging_service_sid":
                       service or None, "body": text, "status": "queued", "num_segments": count, "encoding": encoding,
                       "price": price, "price_unit": config["price_unit"], "status_callback": callback,
                       "received_at": now, "history": ["queued"], "error_code": None}
            self._messages.append(message)
            self._by_sid[sid] = message
            if callback:
                self._schedule_receipts(message, state, config, now)
        latency = config["latency_ms"] / 1000
        if latency:
            time.sleep(latency)
        return message

    def _take(self, sender, cost, config):
        """GCRA over segments per sender: allowed when the theoretical
        arrival time stays within ``burst`` intervals of now."""
        interval = 1.0 / config["sender_rate"] if config["sender_rate"] > 0 else 0.0
        if not interval:
            return True
        now = time.monotonic()
        tat = max(self._tat.get(sender, now), now)
        if tat - now > (config["sender_burst"] - 1) * interval + 1e-6:
            return False
        self._tat[sender] = tat + interval * cost
        return True

    def _resource(self, message):
        return {"sid": message["sid"], "account_sid": self.account_sid, "to": message["to"], "from": message["from"],
                "messaging_service_sid": message["messaging_service_sid"], "body": message["body"],
                "status": message["status"], "num_segments": str(message["num_segments"]), "num_media": "0",
                "direction": message["direction"], "price": message["price"], "price_unit": message["price_unit"],
                "error_code": message["error_code"], "error_message": None, "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message['sid']}.json"}

    def _count(self, status, code=None):
        by_status = self._stats["responses_by_status"]
        by_status[str(status)] = by_status.get(str(status), 0) + 1
        if code:
            self._stats["errors_by_code"][str(code)] = self._stats["errors_by_code"].get(str(code), 0) + 1

    # -- callbacks ---------------------------------------------------------------
    def _schedule_receipts(self, message, state, config, now):
        final = {"undelivered": ("undelivered", "30003"), "failed": ("failed", "30008")}.get(state, ("delivered", ""))
        steps = [("sent", ""), final]
        delays = [config["callback_delay_s"], config["callback_delay_s"] + config["delivered_delay_s"]]
        if config["callback_order"] == "reversed":
            steps.reverse()
        for (status, error), delay in zip(steps, delays, strict=True):
            params = {"MessageSid": message["sid"], "SmsSid": message["sid"], "AccountSid": self.account_sid,
                      "From": message["from"] or "", "To": message["to"], "MessageStatus": status,
                      "SmsStatus": status, "ApiVersion": "2010-04-01"}
            if error:
                params["ErrorCode"] = error
            if message["messaging_service_sid"]:
                params["MessagingServiceSid"] = message["messaging_service_sid"]
            for _ in range(max(1, int(config["callback_repeat"]))):
                self._seq += 1
                heapq.heappush(self._pending, (now + delay, self._seq, message["status_callback"], params,
                                               message["sid"]))
        self._wake.notify_all()

    def _callback_loop(self):
        while True:
            with self._lock:
                while not self._stopping and (not self._pending or self._pending[0][0] > time.time()):
                    timeout = self._pending[0][0] - time.time() if self._pending else None
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                _due, _seq, url, params, sid = heapq.heappop(self._pending)
                timeout = self._config["callback_timeout_s"]
                message = self._by_sid.get(sid)
                status = params["MessageStatus"]
                if message is not None and status not in message["history"]:
                    message["history"].append(status)
                    # The resource shows the furthest state, whatever order the callbacks go in.
                    if _RANK.get(status, 0) > _RANK.get(message["status"], 0):
                        message["status"] = status
                        message["error_code"] = int(params["ErrorCode"]) if params.get("ErrorCode") else None
            answer = self._post_signed(url, params, timeout)
            with self._lock:
                self._callbacks.append({"url": url, "params": params, "answer": answer, "at": time.time()})
                self._stats["callbacks_sent" if isinstance(answer, int) and answer < 300 else "callbacks_failed"] += 1

    def _post_signed(self, url, params, timeout):
        """POST ``params`` form-encoded to ``url`` with Twilio's signature;
        returns the HTTP status, or the error as text."""
        body = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1",
            "X-Twilio-Signature": sign(self.auth_token, url, params)})
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"

    # -- inbound SMS -------------------------------------------------------------
    def send_inbound(self, from_number, body, to=DEFAULT_FROM):
        """A person's SMS to our number: recorded, applied to the opt-out list
        (STOP/START) and POSTed, signed, to ``inbound_url``. Returns
        ``{"sid", "answer"}`` (the HTTP status the product gave)."""
        if not E164.match(from_number or ""):
            raise ValueError(f"{from_number!r} is not an E.164 number")
        sid = "SM" + secrets.token_hex(16)
        keyword = body.strip().split(" ", 1)[0].upper() if body.strip() else ""
        with self._lock:
            if keyword in STOP_WORDS:
                self._numbers[from_number] = "stopped"
            elif keyword in START_WORDS and self._numbers.get(from_number) == "stopped":
                self._numbers[from_number] = "ok"
            self._messages.append({"sid": sid, "direction": "inbound", "to": to, "from": from_number, "body": body,
                                   "status": "received", "num_segments": segments(body)[1],
                                   "encoding": segments(body)[0], "received_at": time.time(), "history": ["received"],
                                   "messaging_service_sid": None, "price": None, "price_unit": None,
                                   "error_code": None, "status_callback": ""})
            url, timeout = self._config["inbound_url"], self._config["callback_timeout_s"]
            self._stats["inbound_sent"] += 1
        if not url:
            return {"sid": sid, "answer": "no inbound_url configured"}
        params = {"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "AccountSid": self.account_sid,
                  "From": from_number, "To": to, "Body": body, "NumMedia": "0", "NumSegments": str(segments(body)[1]),
                  "ApiVersion": "2010-04-01", "FromCountry": "", "FromCity": "", "FromState": "", "FromZip": "",
                  "ToCountry": "US", "ToCity": "", "ToState": "", "ToZip": "", "SmsStatus": "received"}
        return {"sid": sid, "answer": self._post_signed(url, params, timeout)}


# -- HTTP ---------------------------------------------------------------------------
_API = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages(?:/(SM[0-9a-f]{32}))?\.json$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TwilioSandbox/1.0"
    sandbox: TwilioSandbox

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)

    def _reply(self, status, data=None, content_type="application/json", location=None):
        body = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def _route(self, method):
        parsed = urllib.parse.urlsplit(self.path)
        path, query = parsed.path, dict(urllib.parse.parse_qsl(parsed.query))
        body = self._body() if method == "POST" else b""
        sandbox = self.sandbox
        api = _API.match(path)
        if api:
            account, sid = api.groups()
            if method == "POST" and not sid:
                status, data = sandbox.create_message(account, self.headers.get("Authorization"),
                                                      self.headers.get("Content-Type", ""), body)
            elif method == "GET" and sid:
                status, data = sandbox.fetch_message(account, self.headers.get("Authorization"), sid)
            else:
                status, data = 405, {"code": 20004, "message": "Method not allowed", "status": 405}
            return self._reply(status, data)
        try:
            return self._control(method, path, query, body)
        except ValueError as exc:
            return self._reply(400, {"ok": False, "error": str(exc)})

    def _control(self, method, path, query, body):
        sandbox = self.sandbox
        form = self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
        data = {}
        if body:
            data = dict(urllib.parse.parse_qsl(body.decode())) if form else json.loads(body)
        if path == "/_sandbox/health":
            return self._reply(200, {"ok": True})
        if path == "/_sandbox/reset" and method == "POST":
            sandbox.reset(config=bool(data.get("config")))
            return self._reply(200, {"ok": True})
        if path == "/_sandbox/config":
            return self._reply(200, sandbox.configure(**data) if method == "POST" else sandbox.get_config())
        if path == "/_sandbox/numbers":
            if method == "POST":
                sandbox.set_number(data["number"], data.get("state", "ok"))
            return self._reply(200, {"numbers": sandbox.numbers()})
        if path == "/_sandbox/messages":
            return self._reply(200, {"messages": sandbox.messages(query.get("to"))})
        if path == "/_sandbox/callbacks":
            return self._reply(200, {"callbacks": sandbox.callbacks()})
        if path == "/_sandbox/stats":
            return self._reply(200, sandbox.stats())
        if path == "/_sandbox/inbound" and method == "POST":
            result = sandbox.send_inbound(data.get("from", ""), data.get("body", ""))
            if form:  # the phone page's form: back to the phone
                return self._reply(303, b"", location=f"/phone/{urllib.parse.quote(data.get('from', ''))}")
            return self._reply(200, result)
        if path == "/" and method == "GET":
            return self._reply(200, _index_page(sandbox).encode(), "text/html")
        if path.startswith("/phone/") and method == "GET":
            number = urllib.parse.unquote(path[len("/phone/"):])
            return self._reply(200, _phone_page(sandbox, number).encode(), "text/html")
        return self._reply(404, {"ok": False, "error": f"no route {method} {path}"})


# -- pages ------------------------------------------------------------------------
_STYLE = ("<style>body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}pre{margin:0;white-space:pre-wrap}"
          ".in{background:#eef}</style>")


def _index_page(sandbox):
    phones = {}
    for m in sandbox.messages():
        phone = m["from"] if m["direction"] == "inbound" else m["to"]
        phones[phone] = phones.get(phone, 0) + 1
    for number in sandbox.numbers():
        phones.setdefault(number, 0)
    states = sandbox.numbers()
    rows = "".join(
        f'<tr><td><a href="/phone/{urllib.parse.quote(p)}">{html.escape(p)}</a></td><td>{n}</td>'
        f"<td>{html.escape(states.get(p, 'ok'))}</td></tr>" for p, n in sorted(phones.items()))
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='3'>"
            f"<title>Twilio sandbox</title>{_STYLE}</head><body><h1>Twilio SMS sandbox</h1>"
            f"<p>Account {html.escape(sandbox.account_sid)} · Messages API at {html.escape(sandbox.messages_url)}</p>"
            f"<table><tr><th>Phone</th><th>Messages</th><th>State</th></tr>{rows or '<tr><td colspan=3>No messages yet'}"
            f"</table>{_inbound_form('')}</body></html>")


def _inbound_form(number):
    return ("<h2>Send an SMS from a phone</h2><form method='post' action='/_sandbox/inbound'>"
            f"<label>From <input name='from' value='{html.escape(number, quote=True)}' placeholder='+56987654321'>"
            "</label> <label>Text <input name='body' size='40' placeholder='ACEPTAR OT-00042'></label> "
            "<button type='submit'>Send</button></form>")


def _phone_page(sandbox, number):
    rows = "".join(
        f"<tr class='{'in' if m['direction'] == 'inbound' else 'out'}'>"
        f"<td>{time.strftime('%H:%M:%S', time.localtime(m['received_at']))}</td>"
        f"<td>{'← from phone' if m['direction'] == 'inbound' else '→ to phone'}</td>"
        f"<td><pre>{html.escape(m['body'])}</pre></td><td>{html.escape(str(m['status']))}"
        f"{' ' + str(m['error_code']) if m['error_code'] else ''}</td>"
        f"<td>{m['num_segments']} × {html.escape(m['encoding'])}</td></tr>"
        for m in reversed(sandbox.messages(number)))
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='3'>"
            f"<title>{html.escape(number)} · Twilio sandbox</title>{_STYLE}</head><body>"
            f"<p><a href='/'>All phones</a></p><h1>{html.escape(number)}</h1>"
            f"<p>State: {html.escape(sandbox.numbers().get(number, 'ok'))}</p>{_inbound_form(number)}"
            f"<h2>Messages (newest first)</h2><table><tr><th>Time</th><th></th><th>Text</th><th>Status</th>"
            f"<th>Segments</th></tr>{rows or '<tr><td colspan=5>No messages yet'}</table></body></html>")


# -- python -m sandbox.twilio ---------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m sandbox.twilio", description="Local Twilio SMS sandbox.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8082)
    p.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    p.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    p.add_argument("--inbound-url", default="", help="where inbound SMS are POSTed (the product's /sms/twilio/inbound/)")
    p.add_argument("--callback-delay-s", type=float, default=DEFAULT_CONFIG["callback_delay_s"])
    p.add_argument("--delivered-delay-s", type=float, default=DEFAULT_CONFIG["delivered_delay_s"])
    p.add_argument("--sender-rate", type=float, default=DEFAULT_CONFIG["sender_rate"],
                   help="segments/s per sending number (0: no limit)")
    p.add_argument("--sender-burst", type=int, default=DEFAULT_CONFIG["sender_burst"])
    p.add_argument("--no-limits", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(message)s")
    sandbox = TwilioSandbox(host=args.host, port=args.port, account_sid=args.account_sid, auth_token=args.auth_token,
                            inbound_url=args.inbound_url, callback_delay_s=args.callback_delay_s,
                            delivered_delay_s=args.delivered_delay_s, sender_rate=args.sender_rate,
                            sender_burst=args.sender_burst, limits_enabled=not args.no_limits)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sandbox.start()
    print(f"Twilio sandbox listening on {sandbox.url} (phones page: {sandbox.url}/)", flush=True)
    while not stop.wait(1.0):
        pass
    sandbox.stop()
    print("Twilio sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

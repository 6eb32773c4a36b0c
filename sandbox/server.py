"""HTTP front of the sandbox: Bot API, control API and chat pages.

One thread per connection (ThreadingHTTPServer), HTTP/1.1 keep-alive, and each
answer written with a single ``send`` (headers and body together, Nagle off)
so a client reusing its connection never waits on delayed ACKs.
"""

import email.parser
import email.policy
import json
import logging
import select
import socket
import threading
import time
import urllib.parse
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import page
from .state import BotApiError, mask_token

__all__ = ["SandboxHTTPServer"]

log = logging.getLogger("sandbox.telegram")

MAX_BODY = 64 * 1024 * 1024
_MAX_LINE = 65536
_MAX_HEADERS = 100
_REASONS = {status.value: status.phrase for status in HTTPStatus}


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a burst of ~100 new connections must not overflow the backlog

    def __init__(self, address, sandbox):
        self.sandbox = sandbox
        self._connections = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, SandboxRequestHandler)

    def track(self, connection):
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection):
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self):
        """Unblock handler threads parked on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Date:
    """The Date header, formatted at most once a second."""

    _lock = threading.Lock()
    _second = None
    _value = ""

    @classmethod
    def now(cls):
        second = int(time.time())
        if second != cls._second:
            with cls._lock:
                cls._value = formatdate(second, usegmt=True)
                cls._second = second
        return cls._value


class _Headers(dict):
    """Request headers keyed by lower-case name (the last repetition wins)."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name):
        return dict.get(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())


class BadRequestBody(ValueError):
    pass


def parse_body(content_type, body):
    """Bot API parameters and uploaded files from a request body."""
    params, files = {}, {}
    if not body:
        return params, files
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            raise BadRequestBody("can't parse JSON encoded request body") from None
        if not isinstance(data, dict):
            raise BadRequestBody("JSON encoded request body must be an object")
        params.update(data)
    elif mime == "application/x-www-form-urlencoded":
        params.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif mime == "multipart/form-data":
        header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
        if not message.is_multipart():
            raise BadRequestBody("can't parse multipart/form-data request body")
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            payload = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is not None:
                content_type = part.get_content_type() if part.get("Content-Type") else None
                files[name] = (filename, content_type, payload)
            else:
                params[name] = payload.decode(part.get_content_charset() or "utf-8", "replace")
    return params, files


def _json(data):
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class SandboxRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TelegramSandbox/1.0"
    disable_nagle_algorithm = True
    timeout = 300  # seconds an idle keep-alive connection is kept

    def setup(self):
        super().setup()
        self.server.track(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def parse_request(self):
        """Request line and headers, without the email package.

        http.server parses headers with ``email.parser``, which costs about 40%
        of a request here; a Bot API client sends a handful of plain headers.
        """
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad request syntax")
            return False
        self.command, self.path, self.request_version = words
        headers = _Headers()
        for _ in range(_MAX_HEADERS + 1):
            line = self.rfile.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Header line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = line.decode("iso-8859-1").partition(":")
            if not colon:
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad header line")
                return False
            headers[name.strip().lower()] = value.strip()
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        self.headers = headers
        connection = headers.get("connection", "").lower()
        if self.request_version == "HTTP/1.1":
            self.close_connection = "close" in connection
        else:
            self.close_connection = "keep-alive" not in connection
        if headers.get("expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def log_message(self, format, *args):
        # Request lines contain the token; the Bot API route logs a masked line instead.
        pass

    def do_GET(self):
        self._route()

    do_POST = do_GET

    # -- plumbing -------------------------------------------------------------
    def _send(self, status, body, content_type="application/json", drip_s=0.0):
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Server: {self.server_version}\r\n"
            f"Date: {_Date.now()}\r\n"
            f"Content-Type: {content_type}; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        if not drip_s:
            self.wfile.write(head.encode("latin-1") + b"\r\n" + body)
            return
        self.wfile.write(head.encode("latin-1") + b"\r\n")
        self.wfile.flush()
        stopping = self.server.sandbox._state.stopping
        for i in range(len(body)):
            if stopping.wait(drip_s):
                return
            self.wfile.write(body[i : i + 1])
            self.wfile.flush()

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise BadRequestBody("request body is too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise BadRequestBody("request body is too large")
        return self.rfile.read(length) if length > 0 else b""

    def _client_gone(self):
        """True when the client closed its connection (it gave up waiting)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _route(self):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        try:
            body = self._read_body()
        except (BadRequestBody, ValueError) as exc:
            self.close_connection = True
            self._send(400, _json({"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"}))
            return
        if path.startswith("/bot"):
            self._bot_api(path, url.query, body)
        elif path.startswith("/_sandbox/"):
            self._control(path[len("/_sandbox/"):], url.query, body)
        elif self.command == "GET" and (path == "/" or path.startswith("/chat/")):
            self._page(path)
        else:
            self._send(404, _json({"ok": False, "error_code": 404, "description": "Not Found"}))

    # -- Bot API --------------------------------------------------------------
    def _bot_api(self, path, query, body):
        token, _, method = path[len("/bot"):].partition("/")
        token = urllib.parse.unquote(token)
        if not method or "/" in method:
            self._send(404, _json({"ok": False, "error_code": 404, "description": "Not Found"}))
            return
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        try:
            form, files = parse_body(self.headers.get("Content-Type", ""), body)
        except BadRequestBody as exc:
            self._send(400, _json({"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"}))
            return
        params.update(form)
        started = time.monotonic()
        answer = self.server.sandbox.handle_bot_request(token, method, params, files, client_gone=self._client_gone)
        if answer is None:
            self.close_connection = True
            return
        status, response, content_type = answer
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s /%s/%s -> %d (%.0f ms)",
                self.command,
                mask_token(token),
                method,
                status,
                (time.monotonic() - started) * 1000,
            )
        try:
            self._send(status, response, content_type, drip_s=self.server.sandbox._state.config["answer_drip_s"])
        except OSError:
            self.close_connection = True  # the client gave up (e.g. during an injected timeout)

    # -- control API ----------------------------------------------------------
    def _control(self, name, query, body):
        sandbox = self.server.sandbox
        args = dict(urllib.parse.parse_qsl(query))
        try:
            data = json.loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise TypeError("the request body must be a JSON object")
            result = self._control_call(sandbox, name, args, data)
        except LookupError:
            self._send(404, _json({"ok": False, "error": f"unknown control endpoint: {self.command} /_sandbox/{name}"}))
            return
        except (ValueError, TypeError, BotApiError) as exc:
            self._send(400, _json({"ok": False, "error": str(exc)}))
            return
        self._send(200, _json(result))

    def _control_call(self, sandbox, name, args, data):
        post = self.command == "POST"
        if name == "health":
            return {"ok": True}
        if name == "reset" and post:
            sandbox.reset(config=bool(data.get("config")))
            return {"ok": True, "config": sandbox.get_config()}
        if name == "config":
            return sandbox.configure(**data) if post else sandbox.get_config()
        if name == "chats":
            return {"ok": True, "chat": sandbox.set_chat(**data)} if post else {"chats": sandbox.chats()}
        if name == "messages" and not post:
            return {"messages": sandbox.messages(args.get("chat_id"))}
        if name == "stats" and not post:
            return sandbox.stats()
        if name == "updates":
            return sandbox.inject_update(data) if post else {"updates": sandbox.updates()}
        if name == "callback_answers" and not post:
            return {"callback_answers": sandbox.callback_answers()}
        if name == "webhook" and not post:
            return sandbox.webhook_info()
        if name == "commands" and not post:
            return {"commands": sandbox.bot_commands()}
        raise LookupError(name)

    # -- pages ----------------------------------------------------------------
    def _page(self, path):
        sandbox = self.server.sandbox
        if path == "/":
            html = page.render_index(sandbox)
        else:
            chat_id = urllib.parse.unquote(path[len("/chat/"):])
            html = page.render_interactive_chat(sandbox, chat_id)
            if html is None:
                self._send(404, b"<!doctype html><title>Not found</title><p>No such chat.</p>", "text/html")
                return
        self._send(200, html.encode("utf-8"), "text/html")

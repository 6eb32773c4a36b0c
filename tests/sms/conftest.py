"""The Twilio sandbox in-process, and this process's settings pointed at it."""

import http.server
import threading
import urllib.parse

import pytest

from sandbox.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM, TwilioSandbox


@pytest.fixture(scope="session")
def twilio_server():
    server = TwilioSandbox(port=0).start()
    yield server
    server.stop()


@pytest.fixture
def twilio(twilio_server, settings):
    """The session's Twilio sandbox, emptied, default config, no pace limit
    (tests that test the pace turn it on); settings point at it."""
    twilio_server.reset(config=True)
    twilio_server.configure(limits_enabled=False)
    settings.TWILIO_API_URL = twilio_server.url
    settings.TWILIO_ACCOUNT_SID = DEFAULT_ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = DEFAULT_AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER = DEFAULT_FROM
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    from workers import channels

    channels.reset()
    yield twilio_server
    channels.reset()


@pytest.fixture
def receiver():
    """A local endpoint that records what the sandbox POSTs to it."""
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            received.append((self.path, dict(urllib.parse.parse_qsl(body, keep_blank_values=True)), self.headers["X-Twilio-Signature"]))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()

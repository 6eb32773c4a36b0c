"""The WhatsApp sandbox on its own: webhooks it signs, the page a person uses,
its control API and its command line. No Django, no Redis."""

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from sandbox import whatsapp as wsb

ROOT = Path(__file__).resolve().parents[2]
PHONE = "56987651234"


class Receiver:
    """A webhook endpoint that keeps every POST (raw body and signature)."""

    def __init__(self, status=200):
        self.posts, self.status = [], status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((raw, self.headers.get("X-Hub-Signature-256")))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/whatsapp/webhook/"

    def values(self):
        return [json.loads(raw)["entry"][0]["changes"][0]["value"] for raw, _sig in self.posts]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def wa(receiver):
    with wsb.WhatsAppSandbox(webhook_url=receiver.url, status_delay_s=0.01) as sandbox:
        yield sandbox


def send(sandbox, body, token=wsb.DEFAULT_TOKEN):
    return requests.post(f"{sandbox.api_url}/{wsb.DEFAULT_PHONE_NUMBER_ID}/messages", json={
        "messaging_product": "whatsapp", "to": PHONE, **body}, headers={"Authorization": f"Bearer {token}"},
        timeout=5)


def wait(predicate, timeout=5):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_status_webhooks_are_signed_with_the_app_secret_over_the_raw_body(wa, receiver):
    wa.open_window(PHONE)
    wamid = send(wa, {"type": "text", "text": {"body": "hola"}}).json()["messages"][0]["id"]
    wait(lambda: sum(len(v.get("statuses", [])) for v in receiver.values()) == 2)
    for raw, signature in receiver.posts:
        assert signature == "sha256=" + hmac.new(wsb.DEFAULT_APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    states = [s["status"] for v in receiver.values() for s in v["statuses"]]
    assert states == ["sent", "delivered"] and all(s["id"] == wamid for v in receiver.values() for s in v["statuses"])


def test_outside_the_window_a_free_form_message_is_accepted_then_fails_with_131047(wa, receiver):
    assert send(wa, {"type": "text", "text": {"body": "hola"}}).status_code == 200
    wait(lambda: receiver.values())
    (status,) = receiver.values()[0]["statuses"]
    assert status["status"] == "failed" and status["errors"][0]["code"] == 131047


def test_a_wrong_bearer_token_is_401_with_code_190(wa):
    answer = send(wa, {"type": "text", "text": {"body": "hola"}}, token="nope")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == 190


def test_the_page_shows_the_conversation_escaped_and_its_buttons_press_like_whatsapp(wa, receiver):
    wa.open_window(PHONE)
    send(wa, {"type": "interactive", "interactive": {"type": "button", "body": {"text": "OT <A&B>"}, "action": {
        "buttons": [{"type": "reply", "reply": {"id": "wa1.7.0.x", "title": "✅ Aceptar"}}]}}})
    page = requests.get(f"{wa.url}/chat/{PHONE}", timeout=5).text
    assert "OT &lt;A&amp;B&gt;" in page and "✅ Aceptar" in page and 'value="wa1.7.0.x"' in page
    pressed = requests.post(f"{wa.url}/chat/{PHONE}", data={"button_id": "wa1.7.0.x"}, timeout=5)
    assert pressed.status_code == 200  # redirected back to the chat
    wait(lambda: any(v.get("messages") for v in receiver.values()))
    (message,) = next(v["messages"] for v in receiver.values() if v.get("messages"))
    assert message["from"] == PHONE and message["interactive"] == {
        "type": "button_reply", "button_reply": {"id": "wa1.7.0.x", "title": "✅ Aceptar"}}
    assert requests.get(wa.url + "/", timeout=5).text.count(PHONE) >= 1


def test_a_refused_webhook_is_retried(receiver):
    receiver.status = 500
    with wsb.WhatsAppSandbox(webhook_url=receiver.url, status_delay_s=0.01) as sandbox:
        sandbox.user_message(PHONE, text="hola")
        # The sandbox logs a delivery once the receiver's answer is back, a
        # moment after the receiver has counted the POST.
        wait(lambda: len(sandbox.webhooks()) >= 2, timeout=5)
        assert len(receiver.posts) >= 2
        assert [w["status"] for w in sandbox.webhooks()][:2] == [500, 500]


def test_webhooks_only_go_to_loopback():
    with pytest.raises(ValueError, match="loopback"):
        wsb.WhatsAppSandbox(webhook_url="https://example.com/hook")


def test_python_m_sandbox_whatsapp_prints_its_url_and_exits_cleanly_on_sigterm():
    process = subprocess.Popen([sys.executable, "-m", "sandbox.whatsapp", "--port", "0", "--quiet"], cwd=ROOT,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("WhatsApp sandbox listening on http://127.0.0.1:")
        url = line.split(" on ")[1].split(" ")[0]
        assert requests.get(f"{url}/", timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

"""Incoming updates: injection, getUpdates long polling, webhooks, callback answers."""

import http.server
import json
import threading
import time

import pytest

from .conftest import Bot


def updates(response):
    assert response.status_code == 200, response.text
    return response.json()["result"]


# -- injection and getUpdates ------------------------------------------------------


def test_an_injected_message_becomes_a_full_telegram_update(sandbox, control, bot):
    sandbox.set_chat(42, first_name="Ana", username="ana_op")
    update = control("post", "updates", json={"message": {"chat_id": 42, "text": "/start abc"}}).json()
    message = update["message"]
    assert isinstance(update["update_id"], int)
    assert message["chat"] == {"id": 42, "first_name": "Ana", "username": "ana_op", "type": "private"}
    assert message["from"] == {"id": 42, "is_bot": False, "first_name": "Ana", "language_code": "en", "username": "ana_op"}
    assert message["text"] == "/start abc"
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert isinstance(message["message_id"], int) and isinstance(message["date"], int)
    assert updates(bot.call("getUpdates")) == [update]


def test_get_updates_offset_confirms_earlier_updates(sandbox, bot):
    first = sandbox.inject_message(42, "uno")
    second = sandbox.inject_message(42, "dos")
    assert [u["update_id"] for u in updates(bot.call("getUpdates"))] == [first["update_id"], second["update_id"]]
    assert updates(bot.call("getUpdates")) != []  # nothing is confirmed without an offset
    assert updates(bot.call("getUpdates", offset=second["update_id"])) == [second]
    assert updates(bot.call("getUpdates", offset=second["update_id"] + 1)) == []
    assert updates(bot.call("getUpdates")) == []  # confirmed updates are gone for good


def test_get_updates_limit(sandbox, bot):
    for i in range(5):
        sandbox.inject_message(42, str(i))
    assert [u["message"]["text"] for u in updates(bot.call("getUpdates", limit=2))] == ["0", "1"]


def test_a_long_poll_returns_as_soon_as_an_update_is_injected(sandbox, bot):
    threading.Timer(0.3, sandbox.inject_message, args=(42, "hola")).start()
    started = time.monotonic()
    result = updates(bot.call("getUpdates", timeout=10))
    elapsed = time.monotonic() - started
    assert [u["message"]["text"] for u in result] == ["hola"]
    assert 0.25 < elapsed < 3


def test_a_long_poll_without_updates_answers_an_empty_list_after_its_timeout(bot):
    started = time.monotonic()
    assert updates(bot.call("getUpdates", timeout=1)) == []
    assert time.monotonic() - started >= 0.95


def test_a_second_poller_ends_the_first_with_409_conflict(sandbox):
    first, second = Bot(sandbox), Bot(sandbox)
    answers = {}
    poll = threading.Thread(target=lambda: answers.setdefault("first", first.call("getUpdates", timeout=5)))
    poll.start()
    time.sleep(0.2)
    assert updates(second.call("getUpdates")) == []
    poll.join(5)
    body = answers["first"].json()
    assert answers["first"].status_code == 409
    assert body["description"].startswith("Conflict: terminated by other getUpdates request")


# -- callback queries --------------------------------------------------------------


def test_an_injected_callback_query_carries_the_bot_message_and_can_be_answered_once(sandbox, control, bot):
    markup = {"inline_keyboard": [[{"text": "Aceptar", "callback_data": "accept_wo_12345"}]]}
    bot.send(42, "OT-12345", reply_markup=markup)
    update = control("post", "updates", json={
        "callback_query": {"chat_id": 42, "message_id": 1, "data": "accept_wo_12345", "from": {"first_name": "Ana"}},
    }).json()
    query = update["callback_query"]
    assert isinstance(query["id"], str) and query["data"] == "accept_wo_12345"
    assert query["from"]["first_name"] == "Ana" and query["from"]["id"] == 42
    assert query["message"]["text"] == "OT-12345" and query["message"]["reply_markup"] == markup
    answer = bot.call("answerCallbackQuery", callback_query_id=query["id"], text="OT aceptada")
    assert answer.json() == {"ok": True, "result": True}
    again = bot.call("answerCallbackQuery", callback_query_id=query["id"])
    assert again.status_code == 400
    recorded = control("get", "callback_answers").json()["callback_answers"]
    assert [(a["callback_query_id"], a["text"], a["ok"]) for a in recorded] == [
        (query["id"], "OT aceptada", True),
        (query["id"], None, False),
    ]


def test_answering_a_callback_query_too_late_is_query_is_too_old(sandbox, bot):
    sandbox.configure(callback_answer_timeout_s=0.1)
    query = sandbox.inject_callback(42, 1, "accept_1")["callback_query"]
    time.sleep(0.15)
    body = bot.call("answerCallbackQuery", callback_query_id=query["id"]).json()
    assert body == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: query is too old and response timeout expired or query ID is invalid",
    }


def test_answering_an_unknown_callback_query_is_query_id_invalid(bot):
    body = bot.call("answerCallbackQuery", callback_query_id="12345").json()
    assert "query ID is invalid" in body["description"]


def test_a_callback_answer_over_200_characters_is_rejected(sandbox, bot):
    query = sandbox.inject_callback(42, 1, "x")["callback_query"]
    response = bot.call("answerCallbackQuery", callback_query_id=query["id"], text="x" * 201)
    assert response.status_code == 400


# -- webhooks ----------------------------------------------------------------------


class WebhookReceiver:
    """A tiny HTTP server on 127.0.0.1 that records what the sandbox posts."""

    def __init__(self, statuses=()):
        self.requests = []
        self.statuses = list(statuses)  # answers to give first, then 200
        self.received = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), json.loads(body)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if status == 200:
                    receiver.received.set()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/telegram/webhook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receivers = []

    def make(statuses=()):
        receivers.append(WebhookReceiver(statuses))
        return receivers[-1]

    yield make
    for r in receivers:
        r.close()


def test_injected_updates_are_posted_to_the_webhook_with_the_secret_header(sandbox, bot, receiver):
    hook = receiver()
    response = bot.call("setWebhook", url=hook.url, secret_token="s3cr3t_-TOKEN")
    assert response.json() == {"ok": True, "result": True, "description": "Webhook was set"}
    update = sandbox.inject_message(42, "/start abc")
    assert hook.received.wait(5)
    ((path, headers, body),) = hook.requests
    assert path == "/telegram/webhook"
    assert headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cr3t_-TOKEN"
    assert headers["Content-Type"] == "application/json"
    assert body == update
    # The update stops being pending once the sandbox has read the answer.
    deadline = time.monotonic() + 5
    while bot.call("getWebhookInfo").json()["result"]["pending_update_count"] and time.monotonic() < deadline:
        time.sleep(0.02)
    info = bot.call("getWebhookInfo").json()["result"]
    assert info["url"] == hook.url and info["pending_update_count"] == 0 and info["has_custom_certificate"] is False


def test_a_failing_webhook_is_retried_and_the_error_shows_in_webhook_info(sandbox, bot, receiver):
    sandbox.configure(webhook_retry_delay_s=0.05)
    hook = receiver(statuses=[500, 503])
    bot.call("setWebhook", url=hook.url)
    sandbox.inject_message(42, "hola")
    assert hook.received.wait(5)
    assert len(hook.requests) == 3
    # The sandbox counts the delivery after it reads the receiver's answer.
    deadline = time.monotonic() + 5
    while sandbox.stats()["webhook_deliveries"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sandbox.stats()["webhook_deliveries"] == 1


def test_a_webhook_that_keeps_failing_reports_its_last_error(sandbox, bot, receiver):
    sandbox.configure(webhook_retry_delay_s=0.02, webhook_max_attempts=2)
    hook = receiver(statuses=[500] * 10)
    bot.call("setWebhook", url=hook.url)
    sandbox.inject_message(42, "hola")
    deadline = time.monotonic() + 5
    while "last_error_message" not in bot.call("getWebhookInfo").json()["result"] and time.monotonic() < deadline:
        time.sleep(0.02)
    info = bot.call("getWebhookInfo").json()["result"]
    assert info["last_error_message"] == "Wrong response from the webhook: 500 Internal Server Error"
    assert isinstance(info["last_error_date"], int)
    assert len(hook.requests) == 2


def test_get_updates_is_409_while_a_webhook_is_set_and_works_again_after_delete_webhook(sandbox, bot, receiver):
    bot.call("setWebhook", url=receiver().url)
    response = bot.call("getUpdates")
    assert response.status_code == 409
    assert response.json()["description"] == (
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
    )
    assert bot.call("deleteWebhook").json()["description"] == "Webhook was deleted"
    assert bot.call("getUpdates").status_code == 200


@pytest.mark.parametrize("url", ["https://example.com/hook", "http://10.0.0.5:8000/hook", "ftp://127.0.0.1/hook"])
def test_set_webhook_refuses_anything_but_loopback_http(bot, url):
    body = bot.call("setWebhook", url=url).json()
    assert body["error_code"] == 400 and body["description"].startswith("Bad Request: bad webhook: ")


@pytest.mark.parametrize("secret", ["has space", "ñ", "x" * 257])
def test_set_webhook_rejects_a_secret_token_outside_1_to_256_of_a_z_0_9_underscore_dash(bot, receiver, secret):
    response = bot.call("setWebhook", url=receiver().url, secret_token=secret)
    assert response.status_code == 400

"""The control API, the chat pages, logging and the command line."""

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from sandbox import TelegramSandbox

from .conftest import TOKEN

ROOT = Path(__file__).resolve().parents[2]


# -- control API -------------------------------------------------------------------


def test_messages_can_be_filtered_by_chat(sandbox, control, bot):
    bot.send(1, "a")
    bot.send(2, "b")
    bot.send(1, "c")
    assert [m["text"] for m in control("get", "messages").json()["messages"]] == ["a", "b", "c"]
    assert [m["text"] for m in control("get", "messages", params={"chat_id": 1}).json()["messages"]] == ["a", "c"]


def test_each_message_record_has_the_documented_fields(bot, control):
    bot.send(1, "a")
    (record,) = control("get", "messages").json()["messages"]
    assert {"chat_id", "message_id", "method", "text", "parse_mode", "raw_text", "reply_markup", "received_at",
            "token_bot_id", "edited"} <= set(record)


def test_stats_count_requests_by_method_and_status(bot, control):
    bot.send(1)
    bot.send(1, "")
    bot.call("getMe")
    stats = control("get", "stats").json()
    assert stats["requests"] == 3
    assert stats["by_method"] == {"sendMessage": 2, "getMe": 1}
    assert stats["delivered"] == 1
    assert stats["responses_by_status"] == {"200": 2, "400": 1}
    assert stats["rate_limited"] == 0 and stats["timeouts_injected"] == 0
    assert stats["requests_while_force_429"] == []


def test_reset_clears_state_but_keeps_config_unless_asked(sandbox, control, bot):
    control("post", "config", json={"latency_ms": 5, "bot_username": "otro_bot"})
    sandbox.set_chat(1, state="blocked")
    bot.send(2)
    assert control("post", "reset").json()["ok"] is True
    assert sandbox.messages() == [] and sandbox.stats()["requests"] == 0 and sandbox.chats() == []
    assert bot.send(1).status_code == 200  # the blocked state is gone
    assert control("get", "config").json()["bot_username"] == "otro_bot"
    control("post", "reset", json={"config": True})
    assert control("get", "config").json()["bot_username"] == "cmms_sandbox_bot"
    assert control("get", "config").json()["latency_ms"] == 0


def test_config_update_is_partial_and_validated(control):
    config = control("post", "config", json={"chat_rate": 2}).json()
    assert config["chat_rate"] == 2 and config["bot_rate"] == 30
    bad = control("post", "config", json={"latncy_ms": 5})
    assert bad.status_code == 400 and bad.json() == {"ok": False, "error": "unknown option: latncy_ms"}
    assert control("post", "config", json={"fail_rate": 2}).status_code == 400


def test_unknown_control_endpoint_is_404(control):
    assert control("get", "nothing").status_code == 404


def test_invalid_update_injection_is_400(control):
    assert control("post", "updates", json={"poll": {}}).status_code == 400
    assert control("post", "updates", json={"message": {"chat_id": "x", "text": "hola"}}).status_code == 400


# -- pages -------------------------------------------------------------------------


def test_the_chat_page_shows_messages_escaped_with_parse_mode_and_buttons(sandbox, bot):
    markup = {"inline_keyboard": [[{"text": "<Aceptar>", "callback_data": "a"}]]}
    bot.send(42, "<script>alert(1)</script>")
    bot.send(42, "<b>OT</b> &amp; más", parse_mode="HTML", reply_markup=markup)
    page = requests.get(f"{sandbox.url}/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;b&gt;OT&lt;/b&gt; &amp;amp; más" in page.text
    assert "parse_mode=HTML" in page.text and "&lt;Aceptar&gt;" in page.text
    assert '<meta http-equiv="refresh" content="3">' in page.text
    assert page.text.index("OT&lt;/b&gt;") < page.text.index("alert(1)")  # newest first


def test_one_chat_page_shows_only_that_chat_and_marks_edits(sandbox, bot):
    bot.send(42, "original")
    bot.send(43, "otro chat")
    bot.call("editMessageText", chat_id=42, message_id=1, text="editado")
    page = requests.get(f"{sandbox.url}/chat/42", timeout=5).text
    assert "editado" in page and "editado (1x)" in page and "otro chat" not in page


def test_pages_and_config_never_show_a_token(sandbox, bot):
    sandbox.configure(revoked_tokens=[TOKEN])
    bot.send(1)
    assert TOKEN not in requests.get(f"{sandbox.url}/", timeout=5).text


# -- logging and command line ------------------------------------------------------


def test_request_logs_mask_the_token(bot, caplog):
    with caplog.at_level(logging.INFO, logger="sandbox.telegram"):
        bot.send(1)
    assert "bot123456:***" in caplog.text
    assert TOKEN.split(":")[1] not in caplog.text


def test_context_manager_starts_and_stops():
    with TelegramSandbox(latency_ms=0) as sandbox:
        url = sandbox.url
        assert requests.get(f"{url}/_sandbox/health", timeout=5).json() == {"ok": True}
    try:
        requests.get(f"{url}/_sandbox/health", timeout=1)
    except requests.exceptions.ConnectionError:
        pass
    else:
        raise AssertionError("the sandbox still answers after stop()")


def test_python_m_sandbox_prints_its_url_serves_and_exits_cleanly_on_sigterm():
    env = dict(os.environ, SANDBOX_PORT="0", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--latency-ms", "0", "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("Telegram sandbox listening on http://127.0.0.1:")
        url = line.split(" on ")[1].split(" ")[0]
        assert line.endswith(f"(chat page: {url}/)")
        assert requests.get(f"{url}/bot{TOKEN}/getMe", timeout=5).json()["ok"] is True
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_chat_page_lets_a_person_type_and_press_buttons_and_block_the_bot(sandbox):
    import requests

    from sandbox.page import render_interactive_chat

    bot_url = sandbox.bot_url("100000:sandbox-token-not-secret")
    markup = {"inline_keyboard": [[{"text": "✅ Aceptar", "callback_data": "tok<en>"}]]}
    requests.post(f"{bot_url}/sendMessage", json={"chat_id": 4321, "text": "OT", "reply_markup": markup}, timeout=5)
    html = requests.get(f"{sandbox.url}/chat/4321", timeout=5).text
    assert '<form id="say"' in html and 'id="block" data-status="kicked"' in html
    assert 'data-callback="tok&lt;en&gt;" data-message="1"' in html  # pressable, escaped
    assert 'http-equiv="refresh"' not in html  # the script refreshes, not while typing
    sandbox.inject_update({"my_chat_member": {"chat_id": 4321, "status": "kicked"}})
    assert 'data-status="member"' in render_interactive_chat(sandbox, 4321)
    assert sandbox.updates()[-1]["my_chat_member"]["new_chat_member"]["status"] == "kicked"
    group = requests.get(f"{sandbox.url}/chat/-100", timeout=5).text
    assert '<form id="say"' not in group  # a group has no single user to type as


def test_set_my_commands_is_validated_and_stored_per_language(sandbox):
    import requests

    bot_url = sandbox.bot_url("100000:sandbox-token-not-secret")
    ok = requests.post(f"{bot_url}/setMyCommands", json={"commands": [{"command": "ayuda", "description": "Ayuda"}]},
                       timeout=5)
    assert ok.json() == {"ok": True, "result": True}
    bad = requests.post(f"{bot_url}/setMyCommands", json={"commands": [{"command": "Ayuda!", "description": "x"}]},
                        timeout=5)
    assert bad.status_code == 400 and "BOT_COMMAND_INVALID" in bad.json()["description"]
    assert sandbox.bot_commands() == {"default/-": [{"command": "ayuda", "description": "Ayuda"}]}

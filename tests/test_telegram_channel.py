"""Rendering, escaping and error classification of the Telegram channel."""

import json

import pytest
import requests

from notifications.channels import ChannelError, ChatMigrated, ConfigurationError, OutgoingMessage
from notifications.channels.telegram import TelegramChannel, escape, inline_keyboard, render, split_text, visible_length
from notifications.redaction import redact

TOKEN = "424242:unit-test-token-abcdef"


def answer(status, body):
    response = requests.Response()
    response.status_code = status
    response._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return response


def classify(status, body):
    channel = TelegramChannel(TOKEN, "http://127.0.0.1:9")
    with pytest.raises(ChannelError) as info:
        channel._result(answer(status, body))
    return info.value


def test_escape_handles_html_specials_and_leaves_markdown_characters_alone():
    assert escape("Camión <A&B>_01 *[x](y)#") == "Camión &lt;A&amp;B&gt;_01 *[x](y)#"


def test_render_puts_emoji_and_bold_escaped_title_above_escaped_body():
    (text,) = render(OutgoingMessage(title="OT <1>", body="a & b", emoji="📋"))
    assert text == "📋 <b>OT &lt;1&gt;</b>\n\na &amp; b"


def test_long_text_is_split_into_chunks_within_4096_visible_characters():
    body = ("palabra " * 700).strip()  # ~5600 characters
    texts = render(OutgoingMessage(title="Aviso", body=body, emoji="🔧"))
    assert len(texts) == 2
    assert all(visible_length(t.replace("<b>", "").replace("</b>", "")) <= 4096 for t in texts)
    assert " ".join(t.split("\n\n", 1)[-1] for t in texts).split() == body.split()


def test_split_counts_utf16_units_like_telegram():
    chunks = split_text("😀" * 3000, 4096)  # each emoji is 2 UTF-16 units
    assert [visible_length(c) for c in chunks] == [4096, 1904]


def test_inline_keyboard_rejects_callback_data_over_64_bytes():
    assert inline_keyboard([{"text": "A", "callback_data": "a" * 64}]) == {"inline_keyboard": [[{"text": "A", "callback_data": "a" * 64}]]}
    with pytest.raises(ValueError):
        inline_keyboard([{"text": "A", "callback_data": "é" * 33}])


def test_429_is_transient_and_carries_retry_after():
    exc = classify(429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}})
    assert not exc.permanent and exc.retry_after == 7


@pytest.mark.parametrize("description", ["Forbidden: bot was blocked by the user", "Forbidden: user is deactivated"])
def test_403_answers_mark_the_address_unreachable(description):
    exc = classify(403, {"ok": False, "error_code": 403, "description": description})
    assert exc.permanent and exc.unreachable


def test_chat_not_found_is_permanent_and_unreachable():
    exc = classify(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
    assert exc.permanent and exc.unreachable


def test_bad_entities_are_permanent_but_not_the_address_fault():
    exc = classify(400, {"ok": False, "error_code": 400, "description": "Bad Request: can't parse entities: x"})
    assert exc.permanent and not exc.unreachable


def test_group_migration_gives_the_new_chat_id():
    exc = classify(400, {"ok": False, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat", "parameters": {"migrate_to_chat_id": -100123}})
    assert isinstance(exc, ChatMigrated) and exc.new_chat_id == "-100123"


def test_unauthorized_is_a_configuration_error_not_the_recipient():
    exc = classify(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    assert isinstance(exc, ConfigurationError) and not exc.unreachable and "TELEGRAM_BOT_TOKEN" in str(exc)


def test_5xx_html_from_a_proxy_is_transient():
    exc = classify(502, "<html><body><h1>502 Bad Gateway</h1></body></html>")
    assert not exc.permanent and exc.code == 502


def test_connection_error_message_never_contains_the_token():
    channel = TelegramChannel(TOKEN, "http://127.0.0.1:9", timeout=0.5)  # nothing listens on port 9
    with pytest.raises(ChannelError) as info:
        channel.get_me()
    assert TOKEN not in str(info.value) and "unit-test-token" not in str(info.value)
    assert not info.value.permanent


def test_redact_hides_any_telegram_token_shape():
    assert redact("GET /bot123456:ABCdef_ghij-klmnop/sendMessage") == "GET /bot123456:***/sendMessage"


def test_missing_token_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="TELEGRAM_BOT_TOKEN"):
        TelegramChannel("", "http://127.0.0.1:9")


def test_link_is_shown_with_its_label_and_the_url_kept_in_href():
    (text,) = render(OutgoingMessage(title="OT", body="b", link="http://x/a?b=1&c=2", link_label="Abrir en el CMMS"))
    assert text.endswith('<a href="http://x/a?b=1&amp;c=2">→ Abrir en el CMMS</a>')

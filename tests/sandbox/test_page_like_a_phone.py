"""The chat page shows a message the way a Telegram client does: formatting,
links, line breaks and buttons; in Spanish (English when chosen) and in the
configured time zone. The text as sent stays one click away."""

import datetime
import json
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from sandbox.page import entities_to_html

ROOT = Path(__file__).resolve().parents[2]
ALERT = ('⚠️ <b>Riesgo alto: Camión &lt;A&amp;B&gt;_01</b>\n\nProbabilidad <i>87 %</i>\nSegunda línea\n\n'
         '<a href="http://127.0.0.1:8100/admin/cmms/workorder/7/change/">→ Abrir en el CMMS</a>')
BUTTONS = {"inline_keyboard": [[{"text": "✅ Aceptar", "callback_data": "a"}, {"text": "❌ Rechazar",
                                                                              "callback_data": "r"}]]}


def bubble(page):
    start = page.index('<div class="msg">')
    return page[start:page.index("<details>", start)]


def test_a_message_is_rendered_with_bold_italics_links_line_breaks_and_buttons(sandbox, bot):
    bot.send(100001, ALERT, parse_mode="HTML", reply_markup=BUTTONS)
    shown = bubble(requests.get(f"{sandbox.url}/", timeout=5).text)
    assert "<b>Riesgo alto: Camión &lt;A&amp;B&gt;_01</b>" in shown
    assert "<i>87 %</i>\nSegunda línea" in shown  # line breaks kept (white-space: pre-wrap)
    assert '<a href="http://127.0.0.1:8100/admin/cmms/workorder/7/change/" rel="noopener noreferrer">' in shown
    assert '<span class="btn" title="callback_data=a">✅ Aceptar</span>' in shown and "❌ Rechazar" in shown


def test_the_raw_text_is_shown_escaped_under_the_message(sandbox, bot):
    bot.send(100001, ALERT, parse_mode="HTML")
    page = requests.get(f"{sandbox.url}/", timeout=5).text
    assert "&lt;b&gt;Riesgo alto: Camión &amp;lt;A&amp;amp;B&amp;gt;_01&lt;/b&gt;" in page


def test_only_safe_links_become_links():
    html = entities_to_html("ab", [{"type": "text_link", "offset": 0, "length": 1, "url": "javascript:alert(1)"},
                                   {"type": "text_link", "offset": 1, "length": 1, "url": "https://x.example/?a=\"1\""}])
    assert html == 'a<a href="https://x.example/?a=&quot;1&quot;" rel="noopener noreferrer">b</a>'


def test_entity_offsets_count_utf16_units_like_telegram():
    # ⚠️ is two code points and 🚨 one outside the BMP: four UTF-16 units, then the space.
    assert entities_to_html("⚠️🚨 OT", [{"type": "bold", "offset": 5, "length": 2}]) == "⚠️🚨 <b>OT</b>"


def test_overlapping_entities_still_produce_well_formed_html():
    html = entities_to_html("abcd", [{"type": "bold", "offset": 0, "length": 3},
                                     {"type": "italic", "offset": 1, "length": 3}])
    assert html == "<b>a<i>bc</i></b><i>d</i>"


def test_the_page_is_spanish_by_default_and_english_when_chosen(sandbox, bot):
    bot.send(100001, "hola")
    page = requests.get(f"{sandbox.url}/", timeout=5).text
    assert '<html lang="es">' in page and "<title>Sandbox de Telegram</title>" in page
    assert "Estadísticas" in page and "Stats<" not in page and "refreshes" not in page
    sandbox.configure(language="en")
    page = requests.get(f"{sandbox.url}/", timeout=5).text
    assert '<html lang="en">' in page and "<title>Telegram sandbox</title>" in page and "Estadísticas" not in page


def test_times_are_in_the_configured_time_zone(sandbox, bot):
    sandbox.configure(time_zone="Asia/Tokyo")
    bot.send(100001, "hola")
    record = sandbox.messages(chat_id=100001)[0]
    tokyo = datetime.datetime.fromtimestamp(record["received_at"], ZoneInfo("Asia/Tokyo")).strftime("%H:%M:%S")
    page = requests.get(f"{sandbox.url}/chat/100001", timeout=5).text
    assert f'<span class="when">{tokyo}</span>' in page and "Horas en Asia/Tokyo" not in page  # chat page: no intro
    assert "Horas en Asia/Tokyo" in requests.get(f"{sandbox.url}/", timeout=5).text


def test_a_time_zone_that_does_not_exist_is_refused(sandbox):
    with pytest.raises(ValueError, match="IANA"):
        sandbox.configure(time_zone="Mars/Olympus")


def test_known_chats_are_named_and_any_other_chat_is_not_found(tmp_path):
    chats = tmp_path / "summary.json"
    chats.write_text(json.dumps({"logins": [], "chats": [{"chat_id": "100001", "first_name": "Ana",
                                                          "last_name": "Rojas", "username": "operador1"}]}))
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", "--port", "0", "--quiet", "--known-chats", str(chats)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split("listening on ")[1].split()[0]
        send = f"{url}/bot123456:AAE-sandbox_token_0123/sendMessage"
        assert requests.post(send, json={"chat_id": 100001, "text": "hola"}, timeout=5).json()["ok"]
        unknown = requests.post(send, json={"chat_id": 999999999, "text": "hola"}, timeout=5).json()
        assert unknown == {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
        assert "Chat Ana Rojas · 100001" in requests.get(f"{url}/", timeout=5).text
    finally:
        proc.terminate()
        proc.wait(10)

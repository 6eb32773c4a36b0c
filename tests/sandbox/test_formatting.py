"""parse_mode validation: what Telegram accepts, refuses, and how it counts length."""

import pytest

from sandbox.formatting import ParseError, parse_html, parse_markdown, parse_markdown_v2

NASTY_ESCAPED = "Camión &lt;A&amp;B&gt;_01 * [x] (y) # ñandú «ok» &quot;c&quot; &#169; &#x1F6A8;"


def test_html_accepts_escaped_specials_markdown_punctuation_and_accents(sandbox, bot):
    response = bot.send(42, f"<b>{NASTY_ESCAPED}</b>", parse_mode="HTML")
    assert response.status_code == 200, response.text
    assert response.json()["result"]["text"] == 'Camión <A&B>_01 * [x] (y) # ñandú «ok» "c" © 🚨'


def test_html_accepts_every_documented_tag(bot):
    text = (
        "<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins><s>s</s><strike>k</strike><del>d</del>"
        '<span class="tg-spoiler">sp</span><tg-spoiler>t</tg-spoiler><a href="https://cmms.example/ot?id=1&amp;x=2">a</a>'
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji><code>c</code>'
        '<pre><code class="language-python">print(1)</code></pre><blockquote>q</blockquote>'
        "<blockquote expandable>e</blockquote>"
    )
    response = bot.send(42, text, parse_mode="HTML")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Presión < 5 bar", 'Unsupported start tag "" at byte offset 9'),  # ó is 2 bytes
        ("Camión <A&B>_01", "Unsupported start tag"),
        ("a&nbsp;b", 'Unsupported HTML entity "&nbsp;"'),
        ("A & B", 'Character "&" at byte offset 2 must be escaped'),
        ("<br>línea", 'Unsupported start tag "br" at byte offset 0'),
        ("<b>sin cerrar", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
        ("<b", "Unclosed start tag at byte offset 0"),
    ],
)
def test_html_parse_errors_are_400_cant_parse_entities(sandbox, bot, text, reason):
    response = bot.send(42, text, parse_mode="HTML")
    body = response.json()
    assert response.status_code == 400 and body["error_code"] == 400
    assert body["description"].startswith("Bad Request: can't parse entities: ")
    assert reason in body["description"]
    assert sandbox.messages() == []


def test_plain_text_is_not_parsed(bot):
    assert bot.send(42, "a < b & <c>").json()["result"]["text"] == "a < b & <c>"


def test_lenient_entities_behave_like_telegram_when_strictness_is_off(sandbox, bot):
    sandbox.configure(strict_html_entities=False)
    assert bot.send(42, "A & B&nbsp;", parse_mode="HTML").json()["result"]["text"] == "A & B&nbsp;"


def test_send_message_accepts_4096_visible_characters(bot):
    assert bot.send(42, "x" * 4096).status_code == 200


def test_send_message_rejects_text_longer_than_4096_visible_characters(sandbox, bot):
    response = bot.send(42, "x" * 4097)
    assert response.status_code == 400
    assert response.json()["description"] == "Bad Request: message is too long"
    assert sandbox.messages() == []


def test_length_is_counted_after_entity_parsing_so_4096_amp_entities_fit(sandbox, bot):
    text = "<b>" + "&amp;" * 4096 + "</b>"  # 20487 characters as sent, 4096 visible
    response = bot.send(42, text, parse_mode="HTML")
    assert response.status_code == 200, response.text
    assert sandbox.messages()[0]["text"] == "&" * 4096


def test_length_after_entity_parsing_still_rejects_4097_visible_characters(bot):
    response = bot.send(42, "&lt;" * 4097, parse_mode="HTML")
    assert response.json()["description"] == "Bad Request: message is too long"


def test_unsupported_parse_mode_is_rejected(bot):
    assert bot.send(42, "x", parse_mode="BBCode").json()["description"] == "Bad Request: unsupported parse_mode"


def test_markdown_v2_rejects_an_unescaped_reserved_character(bot):
    body = bot.send(42, "Versión 1.2", parse_mode="MarkdownV2").json()
    assert body["description"] == (
        "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'"
    )


def test_markdown_v2_accepts_escaped_text_and_entities(bot):
    result = bot.send(42, r"*OT\-12345* asignada a _Ana_ \(turno 2\)\.", parse_mode="MarkdownV2").json()["result"]
    assert result["text"] == "OT-12345 asignada a Ana (turno 2)."


def test_legacy_markdown_breaks_on_an_odd_underscore_like_telegram(bot):
    body = bot.send(42, "Activo OT_12345", parse_mode="Markdown").json()
    assert body["description"].startswith("Bad Request: can't parse entities: Can't find end of the entity")


# -- the parsers directly ----------------------------------------------------------


def test_html_entities_have_utf16_offsets():
    text, entities = parse_html("🚨 <b>Alerta</b> <a href='https://x.example'>ver</a>")
    assert text == "🚨 Alerta ver"
    assert entities == [
        {"type": "bold", "offset": 3, "length": 6},
        {"type": "text_link", "url": "https://x.example", "offset": 10, "length": 3},
    ]


def test_pre_with_a_code_language_is_one_pre_entity():
    _, entities = parse_html('<pre><code class="language-python">x = 1</code></pre>')
    assert entities == [{"type": "pre", "offset": 0, "length": 5, "language": "python"}]


def test_markdown_v2_unclosed_entity_names_its_type():
    with pytest.raises(ParseError, match="Can't find end of Bold entity at byte offset 0"):
        parse_markdown_v2("*negrita")


def test_legacy_markdown_escapes_underscores():
    assert parse_markdown(r"OT\_12345")[0] == "OT_12345"

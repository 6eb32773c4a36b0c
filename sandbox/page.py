"""The chat pages: what each chat "received", for a human during a demo.

Every value is HTML-escaped; message text is shown as sent (raw), never
rendered, so the page also shows the markup mistakes a real client would hide.
"""

import json
import time
from html import escape

from .config import chat_key

__all__ = ["render_chat", "render_index"]

MESSAGES_PER_CHAT_ON_INDEX = 50
RECENT_MESSAGES_ON_INDEX = 2000  # the index page stays cheap after a benchmark stored 100k messages

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:70rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem;border-bottom:1px solid #ccc}
.msg{border:1px solid #ddd;border-radius:6px;padding:.5rem .7rem;margin:.4rem 0;background:#fafafa}
.meta{color:#666;font-size:.8rem}.text{white-space:pre-wrap;font-family:ui-monospace,monospace;margin:.3rem 0}
.btn{display:inline-block;border:1px solid #88a;border-radius:4px;padding:.1rem .5rem;margin:.1rem;font-size:.85rem}
.edited{color:#a60}.state{font-size:.8rem;color:#a00}table{border-collapse:collapse;font-size:.85rem}
td,th{border:1px solid #ddd;padding:.15rem .5rem;text-align:left;vertical-align:top}
"""


def _layout(title, body):
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"refresh\" content=\"3\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _buttons(markup):
    if not markup:
        return ""
    rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
    html = []
    for row in rows:
        cells = []
        for button in row:
            if isinstance(button, dict):
                action = next(
                    (f"{k}={button[k]}" for k in ("callback_data", "url") if k in button),
                    "",
                )
                label = escape(str(button.get("text", "")))
                cells.append(f'<span class="btn" title="{escape(action)}">{label}</span>')
            else:
                cells.append(f'<span class="btn">{escape(str(button))}</span>')
        html.append("<div>" + "".join(cells) + "</div>")
    return "".join(html)


def _message(record):
    when = time.strftime("%H:%M:%S", time.localtime(record["received_at"]))
    meta = [when, f"#{record['message_id']}", record["method"], f"parse_mode={record['parse_mode'] or 'none'}"]
    if record.get("document"):
        meta.append(f"file={record['document'].get('file_name')}")
    if record["disable_notification"]:
        meta.append("silent")
    edited = ""
    if record["edited"]:
        edited = f' <span class="edited">edited ({len(record["edits"])}x)</span>'
    return (
        '<div class="msg">'
        f'<div class="meta">{escape(" · ".join(str(m) for m in meta))}{edited}</div>'
        f'<div class="text">{escape(record["raw_text"])}</div>'
        f"{_buttons(record['reply_markup'])}</div>"
    )


def _chat_section(chat_id, records, settings, limit=None):
    title = f"Chat {chat_id}"
    state = ""
    if settings and settings.get("state") != "ok":
        state = f' <span class="state">{escape(settings["state"])}</span>'
    shown = list(reversed(records))
    if limit is not None:
        shown = shown[:limit]
    more = ""
    if len(records) > len(shown):
        more = f'<p class="meta">{len(records) - len(shown)} older message(s) not shown.</p>'
    link = f'<a href="/chat/{escape(str(chat_id))}">{escape(title)}</a>'
    body = "".join(_message(r) for r in shown) or '<p class="meta">No messages.</p>'
    return f"<h2>{link}{state} <span class=\"meta\">({len(records)} message(s))</span></h2>{body}{more}"


def _table(data):
    rows = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(json.dumps(v, ensure_ascii=False))}</td></tr>"
        for k, v in data.items()
    )
    return f"<table>{rows}</table>"


def _grouped(sandbox, records):
    chats = {}
    for record in records:
        chats.setdefault(record["chat_id"], []).append(record)
    settings = {c["chat_id"]: c for c in sandbox.chats()}
    for key in settings:
        chats.setdefault(key, [])
    return chats, settings


def render_index(sandbox):
    records, total = sandbox.recent_messages(RECENT_MESSAGES_ON_INDEX)
    chats, settings = _grouped(sandbox, records)
    sections = "".join(
        _chat_section(key, records, settings.get(key), MESSAGES_PER_CHAT_ON_INDEX)
        for key, records in sorted(chats.items(), key=lambda item: -max((r["received_at"] for r in item[1]), default=0))
    )
    body = (
        "<h1>Telegram sandbox</h1>"
        f'<p class="meta">Bot API at {escape(sandbox.url)}/bot&lt;token&gt;/&lt;method&gt;. '
        f"This page refreshes every 3 s; newest messages first; {total} message(s) stored"
        f"{f', the last {len(records)} shown' if total > len(records) else ''}.</p>"
        f"{sections or '<p>No messages yet.</p>'}"
        f"<h2>Stats</h2>{_table(sandbox.stats())}<h2>Config</h2>{_table(sandbox.get_config())}"
    )
    return _layout("Telegram sandbox", body)


def render_chat(sandbox, chat_id):
    key = chat_key(chat_id)
    if key is None:
        return None
    chats, settings = _grouped(sandbox, sandbox.messages(chat_id=key))
    records = chats.get(key, [])
    body = '<p><a href="/">&larr; all chats</a></p>' + _chat_section(key, records, settings.get(key))
    return _layout(f"Telegram sandbox: chat {key}", body)

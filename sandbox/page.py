"""The chat pages: what each chat "received", shown the way a Telegram client
shows it (bold, italics, links, line breaks, buttons under the message), for
a human during a demo.

Spanish by default, English with ``language="en"`` (``--language``, or the
``LANGUAGE_CODE`` environment variable); times in ``time_zone`` (or
``TIME_ZONE``, default America/Santiago), like the rest of ``make run``.
The text as sent (the raw HTML or Markdown) is one click away under each
message, so markup mistakes a real client would hide stay visible. Every
value is HTML-escaped; only the entities Telegram parsed become tags, and a
link keeps only http(s) and tg: URLs.
"""

import datetime
import json
import os
from html import escape
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .config import chat_key

__all__ = ["entities_to_html", "render_chat", "render_index"]

MESSAGES_PER_CHAT_ON_INDEX = 50
RECENT_MESSAGES_ON_INDEX = 2000  # the index page stays cheap after a benchmark stored 100k messages

TEXTS = {
    "es": {
        "title": "Sandbox de Telegram",
        "chat": "Chat {chat}",
        "intro": "Bot API en {url}/bot&lt;token&gt;/&lt;método&gt;. La página se actualiza cada 3 s; los mensajes "
                 "más nuevos primero; {total} mensaje(s) guardado(s){shown}. Horas en {tz}.",
        "shown": ", se muestran los últimos {n}",
        "no_messages_yet": "Aún no hay mensajes.",
        "no_messages": "Sin mensajes.",
        "count": "({n} mensaje(s))",
        "older": "{n} mensaje(s) más antiguo(s) no se muestran.",
        "all_chats": "← todos los chats",
        "edited": "editado ({n}x)",
        "silent": "silencioso",
        "raw": "Texto enviado",
        "stats": "Estadísticas",
        "config": "Configuración",
        "file": "archivo",
        "states": {"not_found": "no existe", "blocked": "bloqueó al bot", "deactivated": "cuenta desactivada",
                   "kicked": "bot expulsado", "migrated": "migrado a supergrupo", "deleted": "eliminado"},
    },
    "en": {
        "title": "Telegram sandbox",
        "chat": "Chat {chat}",
        "intro": "Bot API at {url}/bot&lt;token&gt;/&lt;method&gt;. This page refreshes every 3 s; newest messages "
                 "first; {total} message(s) stored{shown}. Times in {tz}.",
        "shown": ", the last {n} shown",
        "no_messages_yet": "No messages yet.",
        "no_messages": "No messages.",
        "count": "({n} message(s))",
        "older": "{n} older message(s) not shown.",
        "all_chats": "← all chats",
        "edited": "edited ({n}x)",
        "silent": "silent",
        "raw": "Text as sent",
        "stats": "Stats",
        "config": "Config",
        "file": "file",
        "states": {"not_found": "not found", "blocked": "blocked the bot", "deactivated": "deactivated",
                   "kicked": "bot kicked", "migrated": "migrated to a supergroup", "deleted": "deleted"},
    },
}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#dfe7ee;color:#111}
main{max-width:34rem;margin:0 auto;padding:1rem}
h1{font-size:1.3rem}h2{font-size:1rem;margin:1.4rem 0 .4rem;padding:.4rem .6rem;background:#5682a3;color:#fff;
border-radius:8px}h2 a{color:#fff}h2 .meta{color:#e6eef5}
.msg{background:#fff;border-radius:12px 12px 12px 4px;padding:.5rem .7rem;margin:.45rem 0;
box-shadow:0 1px 1px rgba(0,0,0,.15);max-width:92%}
.text{white-space:pre-wrap;overflow-wrap:anywhere;line-height:1.35}
.text a{color:#168acd}.text pre,.text code{font-family:ui-monospace,monospace;background:#f2f4f6;border-radius:4px}
.text blockquote{margin:.2rem 0;padding-left:.6rem;border-left:3px solid #168acd}
.spoiler{background:#bbb;color:transparent}.spoiler:hover{color:inherit;background:none}
.meta{color:#778;font-size:.75rem}.when{float:right;margin-left:.6rem}
.keyboard{display:flex;flex-direction:column;gap:3px;margin-top:4px}.row{display:flex;gap:3px}
.btn{flex:1;text-align:center;background:rgba(86,130,163,.18);color:#2b5278;border-radius:8px;padding:.35rem .4rem;
font-size:.9rem;font-weight:500}
details{margin-top:.3rem}summary{cursor:pointer;color:#778;font-size:.75rem}
details pre{white-space:pre-wrap;font-size:.75rem;background:#f6f6f6;padding:.3rem;border-radius:4px}
.edited{color:#a60}.state{font-size:.8rem;background:#a00;border-radius:4px;padding:0 .3rem;color:#fff}
table{border-collapse:collapse;font-size:.8rem;background:#fff}
td,th{border:1px solid #ddd;padding:.15rem .5rem;text-align:left;vertical-align:top}
"""

_TAGS = {
    "bold": ("<b>", "</b>"), "italic": ("<i>", "</i>"), "underline": ("<u>", "</u>"),
    "strikethrough": ("<s>", "</s>"), "spoiler": ('<span class="spoiler">', "</span>"),
    "code": ("<code>", "</code>"), "pre": ("<pre>", "</pre>"), "blockquote": ("<blockquote>", "</blockquote>"),
    "expandable_blockquote": ("<blockquote>", "</blockquote>"),
}
_SAFE_SCHEMES = ("http://", "https://", "tg://")


def _language(sandbox):
    config = sandbox.get_config()
    lang = (config.get("language") or os.environ.get("LANGUAGE_CODE") or "es").split("-")[0].lower()
    return lang if lang in TEXTS else "es"


def _zone(sandbox):
    name = sandbox.get_config().get("time_zone") or os.environ.get("TIME_ZONE") or "America/Santiago"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return datetime.UTC


def _link(url, inner):
    url = str(url)
    if not url.lower().startswith(_SAFE_SCHEMES):
        return inner
    return f'<a href="{escape(url, quote=True)}" rel="noopener noreferrer">{inner}</a>'


def entities_to_html(text, entities):
    """Telegram's (text, entities) as safe HTML. Offsets and lengths are in
    UTF-16 code units, as the Bot API gives them."""
    units = text.encode("utf-16-le")
    n = len(units) // 2
    opens, closes = {}, {}
    for index, entity in enumerate(sorted(entities or [], key=lambda e: (e["offset"], -e["length"]))):
        start, end = entity["offset"], entity["offset"] + entity["length"]
        if not 0 <= start < end <= n:
            continue
        opens.setdefault(start, []).append((index, entity))
        closes.setdefault(end, []).append(index)
    out, stack = [], []

    def chunk(a, b):
        return units[a * 2:b * 2].decode("utf-16-le", "replace")

    boundaries = sorted({0, n, *opens, *closes})
    for pos, nxt in zip(boundaries, boundaries[1:] + [None], strict=True):
        ending = set(closes.get(pos, []))
        while ending & {i for i, _e, _c in stack}:  # close inner-first; reopen what was not ending
            i, entity, close = stack.pop()
            out.append(close)
            if i in ending:
                ending.discard(i)
            else:
                opens.setdefault(pos, []).insert(0, (i, entity))
        for i, entity in opens.get(pos, []):
            kind = entity.get("type")
            if kind == "text_link":
                url = str(entity.get("url", ""))
                if url.lower().startswith(_SAFE_SCHEMES):
                    out.append(f'<a href="{escape(url, quote=True)}" rel="noopener noreferrer">')
                    stack.append((i, entity, "</a>"))
                    continue
            if kind == "url":
                end = entity["offset"] + entity["length"]
                url = chunk(entity["offset"], end)
                if url.lower().startswith(_SAFE_SCHEMES):
                    out.append(f'<a href="{escape(url, quote=True)}" rel="noopener noreferrer">')
                    stack.append((i, entity, "</a>"))
                    continue
            tag = _TAGS.get(kind)
            if tag:
                out.append(tag[0])
                stack.append((i, entity, tag[1]))
        if nxt is not None:
            out.append(escape(chunk(pos, nxt), quote=False))
    while stack:
        out.append(stack.pop()[2])
    return "".join(out)


def _layout(title, body, lang):
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="refresh" content="3">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body><main>{body}</main></body></html>"
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
                action = next((f"{k}={button[k]}" for k in ("callback_data", "url") if k in button), "")
                label = escape(str(button.get("text", "")))
                if "url" in button:
                    label = _link(button["url"], label)
                cells.append(f'<span class="btn" title="{escape(action)}">{label}</span>')
            else:
                cells.append(f'<span class="btn">{escape(str(button))}</span>')
        html.append('<div class="row">' + "".join(cells) + "</div>")
    return '<div class="keyboard">' + "".join(html) + "</div>"


def _message(record, t, zone):
    when = datetime.datetime.fromtimestamp(record["received_at"], zone).strftime("%H:%M:%S")
    meta = [f"#{record['message_id']}", record["method"], f"parse_mode={record['parse_mode'] or 'none'}"]
    if record.get("document"):
        meta.append(f"{t['file']}={record['document'].get('file_name')}")
    if record["disable_notification"]:
        meta.append(t["silent"])
    edited = ""
    if record["edited"]:
        edited = f' <span class="edited">{escape(t["edited"].format(n=len(record["edits"])))}</span>'
    return (
        '<div class="msg">'
        f'<div class="text">{entities_to_html(record.get("text") or "", record.get("entities"))}</div>'
        f"{_buttons(record['reply_markup'])}"
        f'<div class="meta"><span class="when">{when}</span>{escape(" · ".join(str(m) for m in meta))}{edited}</div>'
        f'<details><summary>{escape(t["raw"])}</summary><pre>{escape(record["raw_text"] or "")}</pre></details>'
        "</div>"
    )


def _chat_name(chat_id, settings):
    names = [settings.get(k) for k in ("first_name", "last_name")] if settings else []
    name = " ".join(n for n in names if n) or (settings or {}).get("title") or ""
    return f"{name} · {chat_id}" if name else str(chat_id)


def _chat_section(chat_id, records, settings, t, zone, limit=None):
    title = t["chat"].format(chat=_chat_name(chat_id, settings))
    state = ""
    if settings and settings.get("state") != "ok":
        state = f' <span class="state">{escape(t["states"].get(settings["state"], settings["state"]))}</span>'
    shown = list(reversed(records))
    if limit is not None:
        shown = shown[:limit]
    more = ""
    if len(records) > len(shown):
        more = f'<p class="meta">{escape(t["older"].format(n=len(records) - len(shown)))}</p>'
    link = f'<a href="/chat/{escape(str(chat_id))}">{escape(title)}</a>'
    body = "".join(_message(r, t, zone) for r in shown) or f'<p class="meta">{escape(t["no_messages"])}</p>'
    count = escape(t["count"].format(n=len(records)))
    return f'<h2>{link}{state} <span class="meta">{count}</span></h2>{body}{more}'


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
    lang = _language(sandbox)
    t, zone = TEXTS[lang], _zone(sandbox)
    records, total = sandbox.recent_messages(RECENT_MESSAGES_ON_INDEX)
    chats, settings = _grouped(sandbox, records)
    sections = "".join(
        _chat_section(key, records, settings.get(key), t, zone, MESSAGES_PER_CHAT_ON_INDEX)
        for key, records in sorted(chats.items(), key=lambda item: -max((r["received_at"] for r in item[1]), default=0))
    )
    shown = t["shown"].format(n=len(records)) if total > len(records) else ""
    intro = t["intro"].format(url=escape(sandbox.url), total=total, shown=escape(shown), tz=escape(str(zone)))
    body = (
        f"<h1>{escape(t['title'])}</h1>"
        f'<p class="meta">{intro}</p>'
        f"{sections or '<p>' + escape(t['no_messages_yet']) + '</p>'}"
        f"<h2>{escape(t['stats'])}</h2>{_table(sandbox.stats())}"
        f"<h2>{escape(t['config'])}</h2>{_table(sandbox.get_config())}"
    )
    return _layout(t["title"], body, lang)


def render_chat(sandbox, chat_id):
    key = chat_key(chat_id)
    if key is None:
        return None
    lang = _language(sandbox)
    t, zone = TEXTS[lang], _zone(sandbox)
    chats, settings = _grouped(sandbox, sandbox.messages(chat_id=key))
    records = chats.get(key, [])
    body = f'<p><a href="/">{escape(t["all_chats"])}</a></p>' + _chat_section(key, records, settings.get(key), t, zone)
    return _layout(f"{t['title']}: {t['chat'].format(chat=_chat_name(key, settings.get(key)))}", body, lang)


# -- two-way: typing and pressing, as the chat's user ------------------------------
# Kept apart from the rendering above: the chat page gains a form and a script
# that post to the control API (POST /_sandbox/updates, /_sandbox/chats) as the
# chat's user; buttons with callback_data become pressable. Edits show through
# the normal refresh ("edited (Nx)").

_INTERACTIVE_SCRIPT = """
<script>
(function(){
  var chat = document.body.getAttribute('data-chat');
  function post(path, body){
    return fetch('/_sandbox/' + path, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                        body: JSON.stringify(body)})
      .then(function(r){ return r.json().then(function(d){ if(!r.ok){ alert(d.error || r.status); } return d; }); });
  }
  var form = document.getElementById('say');
  if (form) form.addEventListener('submit', function(e){
    e.preventDefault();
    var input = form.querySelector('input[name=text]');
    if (!input.value) return;
    post('updates', {message: {chat_id: chat, text: input.value}}).then(function(){ location.reload(); });
  });
  document.querySelectorAll('[data-callback]').forEach(function(b){
    b.addEventListener('click', function(){
      post('updates', {callback_query: {chat_id: chat, message_id: Number(b.getAttribute('data-message')),
                                        data: b.getAttribute('data-callback')}})
        .then(function(){ setTimeout(function(){ location.reload(); }, 700); });
    });
  });
  var block = document.getElementById('block');
  if (block) block.addEventListener('click', function(){
    post('updates', {my_chat_member: {chat_id: chat, status: block.getAttribute('data-status')}})
      .then(function(){ location.reload(); });
  });
  // The page refreshes itself, but not while someone is typing.
  var typing = false;
  if (form) form.addEventListener('input', function(){ typing = true; });
  setInterval(function(){ if (!typing) location.reload(); }, 3000);
})();
</script>
"""

_INTERACTIVE_STYLE = (
    "<style>button.press{border:1px solid #88a;border-radius:4px;background:#eef;margin:.1rem;cursor:pointer}"
    "#say input{width:100%;max-width:30rem;box-sizing:border-box}</style>"
)


INTERACTIVE_TEXTS = {
    "es": {"write": "Escribir como el usuario de este chat", "send": "Enviar", "block": "Bloquear al bot",
           "unblock": "Desbloquear al bot", "press": "Presionar un botón como el usuario de este chat"},
    "en": {"write": "Write as this chat's user", "send": "Send", "block": "Block the bot",
           "unblock": "Unblock the bot", "press": "Press a button as this chat's user"},
}


def interactive_controls(chat_id, blocked=False, lang="es"):
    """The form and the block/unblock switch for one private chat's user."""
    t = INTERACTIVE_TEXTS.get(lang, INTERACTIVE_TEXTS["es"])
    status = "member" if blocked else "kicked"
    label = t["unblock"] if blocked else t["block"]
    return (
        f'{_INTERACTIVE_STYLE}<form id="say" class="msg"><b>{escape(t["write"])}</b> '
        '<input name="text" placeholder="/start &lt;token&gt;, /ordenes, /ayuda, ..." autocomplete="off"> '
        f'<button>{escape(t["send"])}</button> '
        f'<button type="button" id="block" data-status="{status}">{escape(label)}</button></form>'
    )


def pressable_buttons(records, limit=5, lang="es"):
    """The callback buttons of the chat's latest ``limit`` messages that have
    any, as buttons that send the callback query (a panel of its own, so it
    does not depend on how messages are drawn)."""
    rows = []
    for record in reversed(records):
        buttons = [b for row in (record.get("reply_markup") or {}).get("inline_keyboard") or [] for b in row
                   if isinstance(b, dict) and "callback_data" in b]
        if not buttons:
            continue
        cells = "".join(
            f'<button type="button" class="press" data-callback="{escape(str(b["callback_data"]))}" '
            f'data-message="{record["message_id"]}" title="{escape("callback_data=" + str(b["callback_data"]))}">'
            f'{escape(str(b.get("text", "")))}</button>'
            for b in buttons
        )
        preview = escape(" ".join(str(record.get("text") or "").split())[:60])
        rows.append(f'<div class="meta">#{record["message_id"]} {preview}</div><div>{cells}</div>')
        if len(rows) >= limit:
            break
    if not rows:
        return ""
    title = escape(INTERACTIVE_TEXTS.get(lang, INTERACTIVE_TEXTS["es"])["press"])
    return f'<div class="msg" id="press"><b>{title}</b>' + "".join(rows) + "</div>"


def render_interactive_chat(sandbox, chat_id):
    """The chat page with the two-way controls (a private chat only)."""
    html = render_chat(sandbox, chat_id)
    key = chat_key(chat_id)
    if html is None or not isinstance(key, int) or key <= 0:
        return html
    settings = {c["chat_id"]: c for c in sandbox.chats()}.get(key) or {}
    lang = _language(sandbox)
    controls = interactive_controls(key, settings.get("state") == "blocked", lang) + pressable_buttons(
        sandbox.messages(chat_id=key), lang=lang)
    # Our own script refreshes (and pauses while typing), so drop the meta refresh.
    html = html.replace('<meta http-equiv="refresh" content="3">', "", 1)
    html = html.replace("<body>", f'<body data-chat="{key}">{controls}', 1)
    return html.replace("</body>", _INTERACTIVE_SCRIPT + "</body>", 1)

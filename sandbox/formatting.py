"""Telegram text formatting: HTML, MarkdownV2 and legacy Markdown parsing.

Each parser returns ``(visible_text, entities)`` like Telegram does after
"entity parsing", or raises :class:`ParseError` with Telegram's wording (the
caller prefixes it with ``Bad Request: can't parse entities: ``).

Deliberate difference from Telegram: by default the HTML parser rejects an
unknown named entity (``&nbsp;``) and a bare ``&``. Telegram keeps those as
literal text, so the user would read ``&nbsp;`` in the chat; failing loudly in
the sandbox catches the escaping bug before production does. Pass
``strict_entities=False`` for Telegram's lenient behaviour.
"""

import re

__all__ = ["ParseError", "parse_html", "parse_markdown", "parse_markdown_v2", "parse_text", "utf16_len"]


class ParseError(ValueError):
    """Text that Telegram would refuse with ``can't parse entities``."""


def utf16_len(text):
    """Length in UTF-16 code units: the unit of Telegram entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text, index):
    return len(text[:index].encode("utf-8"))


def parse_text(text, parse_mode, strict_entities=True):
    """Dispatch on ``parse_mode`` (case-insensitive; empty means plain text)."""
    mode = (parse_mode or "").lower()
    if not mode:
        return text, []
    if mode == "html":
        return parse_html(text, strict_entities=strict_entities)
    if mode == "markdownv2":
        return parse_markdown_v2(text)
    if mode == "markdown":
        return parse_markdown(text)
    raise LookupError(parse_mode)


# -- HTML -----------------------------------------------------------------------

_HTML_SPECIAL = re.compile(r"[<&]")
_ENTITY = re.compile(r"&(?:#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,7})|([A-Za-z][A-Za-z0-9]*));")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_END_TAG = re.compile(r"</([^\s>]*)\s*>")
_TAG_NAME = re.compile(r"<([^\s>]*)")
_ATTRIBUTE = re.compile(
    r"""\s+([^\s=>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9.\-]+)))?""",
)
_TAG_CLOSE = re.compile(r"\s*>")

_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
_HTML_TAGS = set(_SIMPLE_TAGS) | {"span", "a", "tg-emoji", "blockquote"}


def _decode_entity(text, pos, strict):
    """Return ``(character, next_pos)`` for the entity at ``text[pos] == '&'``."""
    match = _ENTITY.match(text, pos)
    if match:
        decimal, hexadecimal, name = match.groups()
        if name is None:
            code = int(decimal) if decimal is not None else int(hexadecimal, 16)
            if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                return chr(code), match.end()
            if strict:
                raise ParseError(
                    f'Invalid character reference "{match.group(0)}" at byte offset {_byte_offset(text, pos)}'
                )
        elif name in _NAMED:
            return _NAMED[name], match.end()
        elif strict:
            raise ParseError(
                f'Unsupported HTML entity "{match.group(0)}" at byte offset {_byte_offset(text, pos)}; '
                "only &lt; &gt; &amp; &quot; and numeric references are supported"
            )
    elif strict:
        raise ParseError(
            f'Character "&" at byte offset {_byte_offset(text, pos)} must be escaped as "&amp;"'
        )
    return "&", pos + 1


def _html_attributes(text, pos, tag, begin):
    attributes = {}
    while True:
        close = _TAG_CLOSE.match(text, pos)
        if close:
            return attributes, close.end()
        match = _ATTRIBUTE.match(text, pos)
        if not match:
            if pos >= len(text) or text.find(">", pos) < 0:
                raise ParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
            raise ParseError(
                f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                f"at byte offset {_byte_offset(text, begin)}"
            )
        name, dquoted, squoted, token = match.groups()
        value = next((v for v in (dquoted, squoted, token) if v is not None), "")
        attributes[name.lower()] = _unescape_attribute(value)
        pos = match.end()


def _unescape_attribute(value):
    if "&" not in value:
        return value
    return _ENTITY.sub(lambda m: _decode_entity(m.group(0), 0, strict=False)[0], value)


def _html_entity(tag, attributes, begin_text, begin):
    """The entity a start tag opens (or None), validating tag-specific attributes."""
    if tag in _SIMPLE_TAGS:
        kind = _SIMPLE_TAGS[tag]
        if tag == "code" and attributes.get("class", "").startswith("language-"):
            return {"type": "code", "language": attributes["class"][len("language-"):]}
        return {"type": kind}
    if tag == "span":
        if attributes.get("class") != "tg-spoiler":
            raise ParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(begin_text, begin)}')
        return {"type": "spoiler"}
    if tag == "a":
        return {"type": "text_link", "url": attributes.get("href", "")}
    if tag == "tg-emoji":
        if not attributes.get("emoji-id", "").isdigit():
            offset = _byte_offset(begin_text, begin)
            raise ParseError(f"Custom emoji entity must contain a tg-emoji identifier at byte offset {offset}")
        return {"type": "custom_emoji", "custom_emoji_id": attributes["emoji-id"]}
    if tag == "blockquote":
        return {"type": "expandable_blockquote" if "expandable" in attributes else "blockquote"}
    raise AssertionError(tag)


def parse_html(text, strict_entities=True):
    out = []
    entities = []
    stack = []  # (tag, entity, utf16 offset)
    offset16 = 0
    pos = 0
    size = len(text)
    while pos < size:
        match = _HTML_SPECIAL.search(text, pos)
        end = match.start() if match else size
        if end > pos:
            chunk = text[pos:end]
            out.append(chunk)
            offset16 += utf16_len(chunk)
            pos = end
            continue
        if text[pos] == "&":
            char, pos = _decode_entity(text, pos, strict_entities)
            out.append(char)
            offset16 += 1 if char < "\U00010000" else 2
            continue
        begin = pos
        if text.startswith("</", pos):
            match = _END_TAG.match(text, pos)
            if not match:
                raise ParseError(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
            if not stack:
                raise ParseError(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
            name = match.group(1).lower()
            tag, entity, start16 = stack.pop()
            if name != tag:
                raise ParseError(
                    f'Unmatched end tag at byte offset {_byte_offset(text, begin)}, '
                    f'expected "</{tag}>", found "</{name}>"'
                )
            if entity and offset16 > start16:
                entity.update(offset=start16, length=offset16 - start16)
                entities.append(entity)
            pos = match.end()
            continue
        tag = _TAG_NAME.match(text, pos).group(1).lower()
        if tag not in _HTML_TAGS:
            raise ParseError(f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, begin)}')
        attributes, pos = _html_attributes(text, pos + 1 + len(tag), tag, begin)
        entity = _html_entity(tag, attributes, text, begin)
        stack.append((tag, entity, offset16))
    if stack:
        raise ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    _merge_pre_code(entities)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _merge_pre_code(entities):
    """``<pre><code class="language-x">`` is one ``pre`` entity with a language."""
    pres = {(e["offset"], e["length"]): e for e in entities if e["type"] == "pre"}
    kept = []
    for entity in entities:
        if entity["type"] == "code":
            language = entity.pop("language", None)
            pre = pres.get((entity["offset"], entity["length"]))
            if pre is not None:
                if language:
                    pre["language"] = language
                continue
        kept.append(entity)
    entities[:] = kept


# -- MarkdownV2 -----------------------------------------------------------------

_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_TYPES = {
    "*": ("bold", "Bold"),
    "_": ("italic", "Italic"),
    "__": ("underline", "Underline"),
    "~": ("strikethrough", "Strikethrough"),
    "||": ("spoiler", "Spoiler"),
    "[": ("text_link", "TextUrl"),
    "`": ("code", "Code"),
    "```": ("pre", "Pre"),
}


def _reserved(char):
    return f"Character '{char}' is reserved and must be escaped with the preceding '\\'"


def _mdv2_marker(text, pos, top):
    """The entity marker at ``text[pos]`` outside code, or raise for a bare reserved character."""
    char = text[pos]
    if char == "`":
        return "```" if text.startswith("```", pos) else "`"
    if char == "_":
        return "_" if top == "_" else ("__" if text.startswith("__", pos) else "_")
    if char == "|" and text.startswith("||", pos):
        return "||"
    if char in "*~[]":
        return char
    raise ParseError(_reserved(char))


def parse_markdown_v2(text):
    out = []
    entities = []
    stack = []  # (marker, utf16 offset, byte offset of the marker, language)
    offset16 = 0
    pos = 0
    size = len(text)
    line_start = True
    while pos < size:
        char = text[pos]
        top = stack[-1][0] if stack else None
        if char == "\\" and pos + 1 < size and 0 < ord(text[pos + 1]) <= 126:
            out.append(text[pos + 1])
            offset16 += 1
            pos += 2
            line_start = False
            continue
        literal = char not in _MDV2_RESERVED if top not in ("`", "```") else char != "`"
        if literal:
            out.append(char)
            offset16 += 1 if char < "\U00010000" else 2
            line_start = char == "\n"
            pos += 1
            continue
        line_start, was_line_start = False, line_start
        if char == ">" and was_line_start:
            pos += 1  # blockquote line marker; the quote entity itself is not modelled
            continue
        if top in ("`", "```"):
            marker = "```" if top == "```" and text.startswith("```", pos) else "`"
            if marker != top:
                raise ParseError(_reserved(char))
        else:
            marker = _mdv2_marker(text, pos, top)
        if marker == "]":
            if top != "[":
                raise ParseError(_reserved(char))
            start16 = stack.pop()[1]
            pos += 1
            url = ""
            if pos < size and text[pos] == "(":
                url, pos = _mdv2_url(text, pos + 1)
            _append_entity(entities, {"type": "text_link", "url": url}, start16, offset16)
            continue
        if marker == top:
            _, start16, _, language = stack.pop()
            entity = {"type": _MDV2_TYPES[marker][0]}
            if language:
                entity["language"] = language
            _append_entity(entities, entity, start16, offset16)
            pos += len(marker)
            continue
        byte = _byte_offset(text, pos)
        pos += len(marker)
        language = ""
        if marker == "```":
            newline = text.find("\n", pos)
            closing = text.find("```", pos)
            if 0 <= newline < closing:
                language = text[pos:newline].strip()
                pos = newline + 1
        stack.append((marker, offset16, byte, language))
    if stack:
        marker, _, byte, _ = stack[-1]
        raise ParseError(f"Can't find end of {_MDV2_TYPES[marker][1]} entity at byte offset {byte}")
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _mdv2_url(text, pos):
    url = []
    start = pos
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            url.append(text[pos + 1])
            pos += 2
            continue
        if char == ")":
            return "".join(url), pos + 1
        url.append(char)
        pos += 1
    raise ParseError(f"Can't find end of a URL at byte offset {_byte_offset(text, start)}")


def _append_entity(entities, entity, start16, end16):
    if end16 > start16:
        entity.update(offset=start16, length=end16 - start16)
        entities.append(entity)


# -- legacy Markdown ------------------------------------------------------------

_MD_MARKERS = {"*": "bold", "_": "italic", "`": "code"}


def parse_markdown(text):
    out = []
    entities = []
    offset16 = 0
    pos = 0
    size = len(text)
    while pos < size:
        char = text[pos]
        if char == "\\" and pos + 1 < size and text[pos + 1] in "_*`[":
            out.append(text[pos + 1])
            offset16 += 1
            pos += 2
            continue
        if char not in "_*`[":
            out.append(char)
            offset16 += 1 if char < "\U00010000" else 2
            pos += 1
            continue
        begin = pos
        if char == "`" and text.startswith("```", pos):
            end = text.find("```", pos + 3)
            kind, content_start, after = "pre", pos + 3, end + 3
        elif char == "[":
            end = text.find("]", pos + 1)
            kind, content_start, after = "text_link", pos + 1, end + 1
        else:
            end = text.find(char, pos + 1)
            kind, content_start, after = _MD_MARKERS[char], pos + 1, end + 1
        if end < 0:
            raise ParseError(f"Can't find end of the entity starting at byte offset {_byte_offset(text, begin)}")
        content = text[content_start:end]
        entity = {"type": kind}
        if kind == "text_link":
            entity["url"] = ""
            if after < size and text[after] == "(":
                close = text.find(")", after)
                if close < 0:
                    raise ParseError(f"Can't find end of a URL at byte offset {_byte_offset(text, after)}")
                entity["url"] = text[after + 1 : close]
                after = close + 1
        out.append(content)
        length16 = utf16_len(content)
        _append_entity(entities, entity, offset16, offset16 + length16)
        offset16 += length16
        pos = after
    return "".join(out), entities

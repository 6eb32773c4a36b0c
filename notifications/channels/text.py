"""Plain-text helpers shared by channel adapters."""


def split_text(text, limit, measure=len, strip_leading="\n"):
    """Split plain text into chunks of at most ``limit`` units as ``measure``
    counts them (Telegram counts UTF-16 units), preferring paragraph, line and
    word boundaries; each chunk after the first loses ``strip_leading``."""
    chunks = []
    while measure(text) > limit:
        cut = limit
        while measure(text[:cut]) > limit:
            cut -= 1
        window = text[:cut]
        for sep in ("\n\n", "\n", " "):
            pos = window.rfind(sep)
            if pos > cut // 2:
                cut = pos + len(sep)
                break
        chunks.append(text[:cut].rstrip())
        text = text[cut:].lstrip(strip_leading)
    if text or not chunks:
        chunks.append(text)
    return chunks

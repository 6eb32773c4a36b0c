"""Cluster-wide rate limits for providers (placeholder: no pacing yet)."""


def acquire(channel_type, address):
    """Block until sending one message on ``channel_type`` to ``address`` is
    within every limit that applies. Returns the seconds waited."""
    return 0.0


def note_retry_after(channel_type, address, seconds):
    """A provider answered 429: hold the scope for ``seconds``."""

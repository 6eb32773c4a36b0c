"""Printable documents of domain objects, for channels that attach files.

``notifications`` knows nothing of work orders (arrows point one way): the
domain registers a builder per related object type in its AppConfig.ready()
(``cmms`` registers ``work_order``: the order as a one-page PDF), and a
channel's prepare() hook asks for the document of a MessageLog's related
object, in the worker.
"""

from collections.abc import Callable

from .channels import Attachment

_builders: dict[str, Callable[[str], Attachment | None]] = {}


def register(related_object_type, builder):
    """``builder(related_object_id)`` returns an Attachment, or None when the
    object is gone (the message still goes out, without the document)."""
    _builders[related_object_type] = builder


def build(related_object_type, related_object_id):
    builder = _builders.get(related_object_type)
    if builder is None or not related_object_id:
        return None
    return builder(related_object_id)

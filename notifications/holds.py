"""Holding messages for later: quiet hours, shifts, ``/silencio``.

The router asks once per call, for all recipients at once, whether a message
of a given priority must wait, and until when. Who decides is registered by
the apps that know (cmms registers shifts and quiet hours in its
``AppConfig.ready()``); the router knows only the answer. A held row is
written with status HELD and ``next_attempt_at`` = the time it may go, and
is released (alone or in a digest) by whoever registered the hold.

A decider is ``fn(user_ids, priority, now) -> {user_id: datetime}``; users
absent from the answer are not held. With several deciders the latest time
wins.
"""

_deciders = []


def register(decider):
    if decider not in _deciders:
        _deciders.append(decider)
    return decider


def unregister(decider):
    if decider in _deciders:
        _deciders.remove(decider)


def held_until(user_ids, priority, now):
    """{user_id: datetime} for the recipients who must wait."""
    held = {}
    for decider in list(_deciders):
        for user_id, until in (decider(list(user_ids), priority, now) or {}).items():
            if until is not None and until > now and (user_id not in held or until > held[user_id]):
                held[user_id] = until
    return held

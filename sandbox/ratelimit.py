"""GCRA (generic cell rate algorithm): a token bucket kept as one timestamp.

Each scope ("bot 123", "chat 123/42") stores its theoretical arrival time. A
request is allowed when it would not push that time more than ``burst``
emission intervals into the future. The caller holds the sandbox lock; nothing
here sleeps.
"""

import math

__all__ = ["FloodLimiter"]


class FloodLimiter:
    def __init__(self):
        self._tat = {}  # scope key -> theoretical arrival time (monotonic seconds)

    def reset(self):
        self._tat.clear()

    def check(self, scopes, now):
        """``scopes`` is a list of ``(key, rate_per_s, burst)``.

        Returns 0 and consumes one unit in every scope when all allow the
        request; otherwise consumes nothing and returns the whole seconds to
        wait (ceil, at least 1), like Telegram's ``retry_after``.
        """
        updates = []
        wait = 0.0
        for key, rate, burst in scopes:
            if not rate or rate <= 0:
                continue
            interval = 1.0 / rate
            new_tat = max(self._tat.get(key, now), now) + interval
            allowed_at = new_tat - max(burst, 1) * interval
            if allowed_at > now:
                wait = max(wait, allowed_at - now)
            else:
                updates.append((key, new_tat))
        if wait > 0:
            return max(1, math.ceil(wait))
        for key, new_tat in updates:
            self._tat[key] = new_tat
        if len(self._tat) > 100_000:  # a benchmark over many chats: forget idle scopes
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        return 0

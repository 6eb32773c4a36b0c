"""Long polling of getUpdates, for development and sites without public HTTPS.

Each batch goes through ``telegram_updates.record_update`` (the webhook's
step) and the next offset is saved in the same transaction, in
``ChannelConfig(TELEGRAM).settings["polling_offset"]``. getUpdates confirms
an update only when a later call passes a higher offset, so a crash before
the commit fetches the batch again (and the update_id deduplicates it), and
a restart after it starts past it: nothing is lost or applied twice.
"""

import logging
import threading

from django.db import transaction

from .channels import ChannelError, ConfigurationError
from .channels.telegram import get_updates
from .models import ChannelConfig, ChannelType
from .telegram_updates import ALLOWED_UPDATES, BadUpdate, record_update

logger = logging.getLogger(__name__)
OFFSET_KEY = "polling_offset"
MAX_BACKOFF_S = 30.0
CONFLICT_BACKOFF_S = 15.0


class Stop(BaseException):
    """Raised by the SIGTERM handler while a long poll waits (a BaseException,
    so no library's ``except Exception`` swallows it)."""


def load_offset():
    config = ChannelConfig.objects.filter(channel_type=ChannelType.TELEGRAM).first()
    return int((config.settings or {}).get(OFFSET_KEY, 0)) if config else 0


def store_batch(updates):
    """Record a batch and save the offset after it, in one transaction;
    returns the new offset."""
    ids = [u["update_id"] for u in updates if isinstance(u, dict) and isinstance(u.get("update_id"), int)]
    with transaction.atomic():
        for update in updates:
            try:
                record_update(update)
            except BadUpdate:
                logger.warning("Telegram sent something that is not an update; skipped: %.200r", update)
        config, _created = ChannelConfig.objects.select_for_update().get_or_create(channel_type=ChannelType.TELEGRAM)
        settings = dict(config.settings or {})
        offset = max([int(settings.get(OFFSET_KEY, 0)), *(i + 1 for i in ids)])
        settings[OFFSET_KEY] = offset
        ChannelConfig.objects.filter(pk=config.pk).update(settings=settings)
    return offset


def remember_mode(mode, bot_username=None):
    """How this bot receives updates ("polling" or "webhook") and its
    @username, on the TELEGRAM ChannelConfig for the dashboard."""
    with transaction.atomic():
        config, _created = ChannelConfig.objects.select_for_update().get_or_create(channel_type=ChannelType.TELEGRAM)
        settings = dict(config.settings or {})
        settings["mode"] = mode
        if bot_username:
            settings["bot_username"] = bot_username
        ChannelConfig.objects.filter(pk=config.pk).update(settings=settings)


class Poller:
    def __init__(self, channel, poll_timeout=25, say=None):
        self.channel = channel
        self.poll_timeout = poll_timeout
        self.say = say or logger.info
        self.stopping = threading.Event()
        self.waiting = False
        self.recorded = 0

    def stop(self):
        """From a signal handler: stop now if waiting on the network, else after the batch."""
        self.stopping.set()
        if self.waiting:
            raise Stop()

    def run(self):
        try:
            username = self.channel.get_me().get("username")
        except ChannelError:  # the loop below explains a wrong token or an unreachable API
            username = None
        remember_mode("polling", username)
        offset = load_offset()
        self.say(f"Polling getUpdates from offset {offset}.")
        failures = 0
        while not self.stopping.is_set():
            try:
                updates = self._poll(offset)
            except Stop:
                break
            except ChannelError as exc:
                failures += 1
                self._explain(exc, failures)
                continue
            failures = 0
            if updates:
                offset = store_batch(updates)
                self.recorded += len(updates)
        self.say(f"Stopped; next offset {offset}, {self.recorded} update(s) recorded.")
        return offset

    def _poll(self, offset):
        self.waiting = True
        try:
            if self.stopping.is_set():
                raise Stop()
            return get_updates(self.channel, offset, self.poll_timeout, ALLOWED_UPDATES) or []
        finally:
            self.waiting = False

    def _explain(self, exc, failures):
        if exc.code == 409:
            delay = CONFLICT_BACKOFF_S
            if "webhook" in str(exc).lower():
                self.say(f"{exc}. A webhook is set: polling cannot run at the same time. Remove it with "
                         f"`manage.py setup_telegram_bot --delete-webhook` (retrying in {delay:g} s).")
            else:
                self.say(f"{exc}. Another run_telegram_bot (or another program) polls this bot; "
                         f"stop it (retrying in {delay:g} s).")
        elif isinstance(exc, ConfigurationError):
            delay = MAX_BACKOFF_S
            self.say(f"{exc} (retrying in {delay:g} s).")
        else:
            delay = min(2.0 ** min(failures, 5), MAX_BACKOFF_S)
            self.say(f"{exc} (retrying in {delay:g} s).")
        self.waiting = True
        try:
            self.stopping.wait(delay)
        except Stop:
            pass
        finally:
            self.waiting = False

"""The omnichannel bot's records: channel settings, user preferences, and the
message log, which is also the outbox (a row is the unit of delivery)."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class ChannelType(models.TextChoices):
    TELEGRAM = "TELEGRAM", "Telegram"
    WHATSAPP = "WHATSAPP", "WhatsApp"
    EMAIL = "EMAIL", _("Email")
    SMS = "SMS", "SMS"
    IN_APP = "IN_APP", _("In-app")


class Priority(models.TextChoices):
    LOW = "low", _("Low")
    NORMAL = "normal", _("Normal")
    HIGH = "high", _("High")
    CRITICAL = "critical", _("Critical")


PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}


class ChannelConfig(models.Model):
    channel_type = models.CharField(_("channel type"), max_length=20, choices=ChannelType.choices, unique=True)
    is_enabled = models.BooleanField(_("enabled"), default=True)
    settings = models.JSONField(_("settings"), default=dict, blank=True)
    # A secret given on the command line (setup_telegram_bot --token), encrypted
    # with notifications.crypto; the environment variable wins over it.
    secret_encrypted = models.TextField(_("encrypted secret"), blank=True, editable=False)
    # Derived from MessageLog by workers.tasks.refresh_channel_stats: workers never
    # increment these, so no row is hot under load.
    messages_sent = models.PositiveBigIntegerField(_("messages sent"), default=0, editable=False)
    messages_failed = models.PositiveBigIntegerField(_("messages failed"), default=0, editable=False)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    stats_updated_at = models.DateTimeField(_("statistics updated"), null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("channel config")
        verbose_name_plural = _("channel configs")
        ordering = ["channel_type"]

    def __str__(self):
        return self.get_channel_type_display()

    @property
    def has_stored_secret(self):
        return bool(self.secret_encrypted)


class UserChannelPreference(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="channel_preferences", verbose_name=_("user")
    )
    channel_type = models.CharField(_("channel type"), max_length=20, choices=ChannelType.choices)
    is_enabled = models.BooleanField(_("enabled"), default=True)
    channel_user_id = models.CharField(
        _("channel user id"),
        max_length=128,
        blank=True,
        help_text=_("Telegram chat_id, e-mail address or phone number (E.164), depending on the channel."),
    )
    notify_work_orders = models.BooleanField(_("notify work orders"), default=True)
    notify_predictions = models.BooleanField(_("notify predictions"), default=True)
    notify_reminders = models.BooleanField(_("notify maintenance reminders"), default=True)
    notify_alerts = models.BooleanField(_("notify alerts and announcements"), default=True)
    min_priority = models.CharField(
        _("minimum priority"),
        max_length=10,
        choices=Priority.choices,
        default=Priority.LOW,
        # Blank in a form means "the channel's default" (save() fills it in).
        blank=True,
        help_text=_("Only messages of this priority or higher use this channel (e.g. SMS for critical only). "
                    "Empty: the channel's default."),
    )
    # Set by the worker on a permanent provider error (bot blocked, chat not
    # found): routing skips the address until someone fixes it.
    # Failover for high and critical messages (notifications.failover): when a
    # message on another channel fails or is not confirmed in time, it goes
    # out again on the user's channel with the lowest rank not tried yet.
    failover_rank = models.PositiveSmallIntegerField(
        _("failover order"), null=True, blank=True,
        help_text=_("1 = first backup channel. Empty: not used for failover."),
    )
    failover_only = models.BooleanField(
        _("only for failover"), default=False,
        help_text=_("Used only when a message on another channel failed or was not confirmed."),
    )
    is_reachable = models.BooleanField(_("reachable"), default=True)
    unreachable_reason = models.CharField(_("unreachable reason"), max_length=255, blank=True)
    unreachable_since = models.DateTimeField(_("unreachable since"), null=True, blank=True)
    # The person asked not to get messages on this address (SMS STOP, or the
    # provider's 21610); START clears it. Routing skips it meanwhile.
    opted_out_at = models.DateTimeField(_("opted out"), null=True, blank=True)
    # WhatsApp: when the user last wrote to us, which opens Meta's 24-hour
    # customer-service window (free text and buttons allowed inside it).
    window_opened_at = models.DateTimeField(_("conversation window opened"), null=True, blank=True)
    # Set by the Telegram bot's /silencio: until then only critical messages use this channel.
    muted_until = models.DateTimeField(
        _("muted until"), null=True, blank=True, help_text=_("Until then only critical messages use this channel.")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("user channel preference")
        verbose_name_plural = _("user channel preferences")
        constraints = [models.UniqueConstraint(fields=["user", "channel_type"], name="unique_user_channel")]
        ordering = ["user_id", "channel_type"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Loaded rows and explicit values keep theirs; save() gives a new row
        # without one the channel's default minimum priority.
        self._min_priority_given = bool(args) or "min_priority" in kwargs

    def __str__(self):
        return f"{self.user} · {self.get_channel_type_display()}"

    def channel_default_min_priority(self):
        return settings.CHANNEL_DEFAULT_MIN_PRIORITY.get(self.channel_type, Priority.LOW)

    def clean(self):
        from .channels import registry

        super().clean()
        if self.channel_user_id:
            try:
                self.channel_user_id = registry.normalize_address(self.channel_type, self.channel_user_id)
            except registry.InvalidAddress as exc:
                raise ValidationError({"channel_user_id": str(exc)}) from None

    def save(self, *args, **kwargs):
        from .channels import registry

        if not self.min_priority or (self._state.adding and not self._min_priority_given):
            self.min_priority = self.channel_default_min_priority()
        try:
            # Stored canonical however it was written (receipts, STOP and the
            # worker find the preference by the E.164 number); an invalid one
            # stays as typed, and routing SKIPS it with the reason.
            self.channel_user_id = registry.normalize_address(self.channel_type, self.channel_user_id)
        except registry.InvalidAddress:
            pass
        super().save(*args, **kwargs)

    def mark_unreachable(self, reason):
        UserChannelPreference.objects.filter(pk=self.pk).update(
            is_reachable=False, unreachable_reason=reason[:255], unreachable_since=timezone.now()
        )


class MessageStatus(models.TextChoices):
    """One closed vocabulary for every channel (notifications.delivery_states
    says how a row may move): QUEUED -> SENDING -> SENT -> DELIVERED -> READ,
    RETRYING between attempts; FAILED (we gave up), UNDELIVERED (the provider
    reported it could not deliver what it accepted) and SKIPPED (routing
    decided not to send) are terminal."""

    QUEUED = "QUEUED", _("Queued")
    SENDING = "SENDING", _("Sending")
    SENT = "SENT", _("Sent")
    DELIVERED = "DELIVERED", _("Delivered")
    READ = "READ", _("Read")
    RETRYING = "RETRYING", _("Retrying")
    FAILED = "FAILED", _("Failed")
    UNDELIVERED = "UNDELIVERED", _("Undelivered")
    SKIPPED = "SKIPPED", _("Skipped")
    # Waiting for the recipient's shift (quiet hours, /silencio) until
    # next_attempt_at; then it goes out alone or inside a digest.
    HELD = "HELD", _("Held (off shift)")


class MessageLog(models.Model):
    """One message to one recipient on one channel. Its status is the delivery
    state machine: QUEUED -> SENDING -> SENT, or RETRYING / FAILED; SKIPPED
    when routing decided not to send (channel disabled, address unreachable)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="message_logs",
        verbose_name=_("user"),
    )
    channel_type = models.CharField(_("channel type"), max_length=20, choices=ChannelType.choices)
    recipient = models.CharField(_("recipient"), max_length=128, blank=True)
    message_type = models.CharField(_("message type"), max_length=50)
    title = models.CharField(_("title"), max_length=255, blank=True)
    body = models.TextField(_("message"))
    priority = models.CharField(_("priority"), max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    # Channel extras chosen by the producer, e.g. {"actions": [{"text", "callback_data"}]}.
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    status = models.CharField(
        _("status"), max_length=12, choices=MessageStatus.choices, default=MessageStatus.QUEUED, db_index=True
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    # True when an attempt timed out after the request left: the provider may
    # have delivered it, so a later successful attempt can be a duplicate.
    possible_duplicate = models.BooleanField(_("possible duplicate"), default=False)
    provider_message_id = models.CharField(_("provider message id"), max_length=128, blank=True)
    # A long text goes out in several provider messages (Telegram: 4096
    # characters each): how many reached the recipient, so that a retry
    # resumes at the first unsent one instead of repeating the others.
    chunks_sent = models.PositiveIntegerField(_("chunks sent"), default=0)
    # The worker process holding the claim (SENDING): the relay retries the
    # row at once when that worker's heartbeat stops, instead of after the lease.
    claimed_by = models.CharField(_("claimed by"), max_length=100, blank=True)
    related_object_type = models.CharField(_("related object type"), max_length=50, blank=True)
    related_object_id = models.CharField(_("related object id"), max_length=64, blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    published_at = models.DateTimeField(_("published to the queue"), null=True, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    lease_expires_at = models.DateTimeField(_("claim expires"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    # Set from delivery receipts (SMS, WhatsApp) or the inbox (in-app).
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    read_at = models.DateTimeField(_("read"), null=True, blank=True)
    failed_at = models.DateTimeField(_("failed"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)
    # The chain an operator follows: this row re-sends ``failover_of`` on the
    # next channel; a held row went out inside ``digest``.
    failover_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="failovers", verbose_name=_("failover of"))
    failover_checked_at = models.DateTimeField(_("failover checked"), null=True, blank=True, editable=False)
    digest = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="digested", verbose_name=_("sent in digest"))

    class Meta:
        verbose_name = _("message log")
        verbose_name_plural = _("message logs")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="msglog_status_next"),
            models.Index(fields=["channel_type", "status"], name="msglog_channel_status"),
            models.Index(fields=["related_object_type", "related_object_id"], name="msglog_related"),
            # Channel statistics: the last use per channel without a table scan.
            models.Index(fields=["channel_type", "sent_at"], name="msglog_channel_sent"),
            # The dashboard: the oldest waiting row, recent failures, dead letters.
            models.Index(fields=["status", "created_at"], name="msglog_status_created"),
            models.Index(fields=["status", "failed_at"], name="msglog_status_failed"),
            # Delivery receipts name the provider's message id.
            models.Index(fields=["channel_type", "provider_message_id"], name="msglog_provider_id"),
            # Failover and the quiet-hours release scan only what is still undecided.
            models.Index(fields=["created_at"], condition=Q(failover_checked_at__isnull=True, priority__in=["high", "critical"]),
                         name="msglog_failover_pending"),
            models.Index(fields=["next_attempt_at"], condition=Q(status="HELD"), name="msglog_held_due"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key", "user", "channel_type"],
                condition=Q(idempotency_key__isnull=False),
                name="msglog_unique_idempotency_key",
            )
        ]

    def __str__(self):
        # A sentence: it is the admin's breadcrumb and the title of related pages.
        return gettext("Message %(id)s to %(recipient)s via %(channel)s") % {
            "id": self.pk, "recipient": self.recipient or self.user_id, "channel": self.get_channel_type_display()}


class InAppNotification(models.Model):
    """The in-app inbox (/inbox/): what a user reads in the web app; open pages
    learn of a new one by a WebSocket push (notifications.inbox)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="in_app_notifications", verbose_name=_("user")
    )
    message_log = models.OneToOneField(
        MessageLog, on_delete=models.SET_NULL, null=True, blank=True, related_name="in_app_notification"
    )
    message_type = models.CharField(_("message type"), max_length=50)
    title = models.CharField(_("title"), max_length=255, blank=True)
    body = models.TextField(_("message"))
    priority = models.CharField(_("priority"), max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    related_object_type = models.CharField(_("related object type"), max_length=50, blank=True)
    related_object_id = models.CharField(_("related object id"), max_length=64, blank=True)
    # Where the related object is shown (a work order's page), when the producer gave one.
    link = models.CharField(_("link"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    read_at = models.DateTimeField(_("read"), null=True, blank=True)

    class Meta:
        verbose_name = _("in-app notification")
        verbose_name_plural = _("in-app notifications")
        ordering = ["-created_at", "-id"]
        indexes = [
            # The inbox page: one user's newest first (also filtered by type),
            # a page of 25 read straight off the index, however many rows.
            models.Index(fields=["user", "-created_at", "-id"], name="inapp_user_newest"),
            models.Index(fields=["user", "message_type", "-created_at", "-id"], name="inapp_user_type_newest"),
            # The unread badge on every page, and the "unread" filter.
            models.Index(fields=["user", "-created_at", "-id"], condition=Q(read_at__isnull=True),
                         name="inapp_user_unread"),
        ]

    def __str__(self):
        return f"{self.user}: {self.title}"


class InboundStatus(models.TextChoices):
    RECEIVED = "RECEIVED", _("Received")
    PROCESSING = "PROCESSING", _("Processing")
    PROCESSED = "PROCESSED", _("Processed")
    IGNORED = "IGNORED", _("Ignored")
    FAILED = "FAILED", _("Failed")


class InboundEvent(models.Model):
    """What came back from a provider or a person (a Telegram update, a button
    press, a delivery receipt, an inbound SMS), recorded once per provider id
    before it is processed (notifications.inbound): providers deliver at least
    once, so the unique (provider, event_id) makes a repeat harmless."""

    provider = models.CharField(_("provider"), max_length=20, choices=ChannelType.choices)
    event_id = models.CharField(_("provider event id"), max_length=200)
    kind = models.CharField(_("kind"), max_length=40, blank=True)
    # The chat id, phone number or address it came from, when it has one.
    sender = models.CharField(_("sender"), max_length=128, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="inbound_events",
        verbose_name=_("user"),
    )
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    status = models.CharField(
        _("status"), max_length=12, choices=InboundStatus.choices, default=InboundStatus.RECEIVED, db_index=True
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    # What processing did, in words an operator reads ("Orden OT-00042 aceptada").
    outcome = models.CharField(_("outcome"), max_length=255, blank=True)
    error = models.TextField(_("error"), blank=True)
    received_at = models.DateTimeField(_("received"), default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)
    lease_expires_at = models.DateTimeField(_("claim expires"), null=True, blank=True)

    class Meta:
        verbose_name = _("inbound event")
        verbose_name_plural = _("inbound events")
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="inbound_unique_provider_event"),
        ]
        indexes = [models.Index(fields=["status", "received_at"], name="inbound_status_received")]

    def __str__(self):
        return f"{self.get_provider_display()} {self.kind} {self.event_id}"


class MessageStatsHour(models.Model):
    """MessageLog rows per hour of creation, channel and status, rolled up by
    beat (notifications.stats): the dashboard's charts and /metrics' totals
    read these few rows instead of scanning a table of millions, and they
    survive MessageLog retention."""

    hour = models.DateTimeField(_("hour"))
    channel_type = models.CharField(_("channel type"), max_length=20, choices=ChannelType.choices)
    status = models.CharField(_("status"), max_length=12, choices=MessageStatus.choices)
    count = models.PositiveBigIntegerField(_("messages"), default=0)

    class Meta:
        verbose_name = _("hourly message statistic")
        verbose_name_plural = _("hourly message statistics")
        constraints = [
            models.UniqueConstraint(fields=["hour", "channel_type", "status"], name="msgstats_unique_hour_channel_status")
        ]


class WhatsAppTemplate(models.Model):
    """The Meta-approved template a message type is sent as outside the
    24-hour window: its name and language as approved in WhatsApp Manager and
    the message fields that fill its body's {{1}}, {{2}}... in order."""

    message_type = models.CharField(_("message type"), max_length=50, unique=True)
    name = models.CharField(_("template name"), max_length=512)
    language = models.CharField(_("language code"), max_length=15, default="es",
                                help_text=_("As approved in WhatsApp Manager: es, es_CL, en_US..."))
    parameters = models.JSONField(
        _("body parameters"), default=list, blank=True,
        help_text=_("Ordered message fields for {{1}}, {{2}}...: title, body, link, or a key of the message's "
                    "context (number, asset, asset_code, site, due_at, failure_mode...)."),
    )
    quick_reply_buttons = models.PositiveSmallIntegerField(
        _("quick-reply buttons"), default=0,
        help_text=_("Quick-reply buttons the approved template has; the message's actions fill them in order."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("WhatsApp template")
        verbose_name_plural = _("WhatsApp templates")
        ordering = ["message_type"]

    def __str__(self):
        return f"{self.message_type} → {self.name} ({self.language})"


class TelegramLinkToken(models.Model):
    """A one-time deep link (``https://t.me/<bot>?start=<token>``) that links
    a user's Telegram chat (notifications.telegram_link). Only the token's
    SHA-256 is stored; it expires and is used at most once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="telegram_link_tokens", verbose_name=_("user")
    )
    token_hash = models.CharField(_("token hash"), max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    expires_at = models.DateTimeField(_("expires"), editable=False)
    used_at = models.DateTimeField(_("used"), null=True, blank=True, editable=False)
    used_by_chat = models.CharField(_("linked chat"), max_length=64, blank=True, editable=False)

    class Meta:
        verbose_name = _("Telegram link")
        verbose_name_plural = _("Telegram links")
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.user} · {self.created_at:%Y-%m-%d %H:%M}"


class RoleBroadcast(models.Model):
    """One ``broadcast_to_role`` call, written in the caller's transaction and
    expanded by workers into MessageLog rows in batches of users, by user pk
    (notifications.role_broadcasts). ``last_user_id`` is the cursor: every
    recipient up to it has its rows, written in the same transaction that
    moved it. Not ``cmms.Broadcast``, which records read confirmations."""

    role = models.CharField(_("role"), max_length=20)
    message_type = models.CharField(_("message type"), max_length=50)
    title = models.CharField(_("title"), max_length=255, blank=True)
    body = models.TextField(_("message"))
    priority = models.CharField(_("priority"), max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, null=True, blank=True)
    # Counted by SQL when the call was made (the call's return value).
    total = models.PositiveIntegerField(_("recipients"), default=0)
    success = models.PositiveIntegerField(_("reachable"), default=0)
    failed = models.PositiveIntegerField(_("unreachable"), default=0)
    # The recipients are the role's active users up to this pk (the newest at the call).
    max_user_id = models.BigIntegerField(_("last recipient id"), default=0)
    last_user_id = models.BigIntegerField(_("expanded up to user id"), default=0)
    users_expanded = models.PositiveIntegerField(_("users expanded"), default=0)
    rows_written = models.PositiveIntegerField(_("messages written"), default=0)
    rows_queued = models.PositiveIntegerField(_("messages queued"), default=0)
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    # When the expansion task was last handed to the broker, and when a worker
    # (or the publisher) last moved the record: the relay republishes a record
    # that stopped moving (its task lost, its worker killed).
    published_at = models.DateTimeField(_("expansion published"), null=True, blank=True)
    touched_at = models.DateTimeField(_("last progress"), default=timezone.now)
    expanded_at = models.DateTimeField(_("expanded"), null=True, blank=True)

    class Meta:
        verbose_name = _("role broadcast")
        verbose_name_plural = _("role broadcasts")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], condition=Q(idempotency_key__isnull=False),
                                    name="rolebroadcast_unique_idempotency_key"),
        ]
        indexes = [
            models.Index(fields=["touched_at"], condition=Q(expanded_at__isnull=True), name="rolebroadcast_pending"),
        ]

    def __str__(self):
        return gettext("Broadcast %(id)s to %(role)s: %(title)s") % {
            "id": self.pk, "role": self.role_label(), "title": self.title or self.body[:40]}

    @staticmethod
    def role_choices():
        from django.contrib.auth import get_user_model

        return get_user_model()._meta.get_field("role").choices

    def role_label(self):
        """The role as users read it (Técnico), not its stored value (TECHNICIAN)."""
        return dict(self.role_choices()).get(self.role, self.role)

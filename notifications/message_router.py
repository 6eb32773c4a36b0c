"""MessageRouter: who gets what, on which channels.

Pure policy, no network I/O: it validates the call, resolves each recipient's
enabled channels from UserChannelPreference (the message type's preference
flag, the priority threshold, reachability), writes one MessageLog row per
(recipient, channel) inside the caller's transaction, and publishes delivery
tasks only after that transaction commits.
"""

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import AutoField
from django.db.models.sql import InsertQuery
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _

from . import dispatch, holds, message_types, role_broadcasts
from .channels import registry
from .channels.telegram import MAX_CALLBACK_DATA_BYTES
from .exceptions import RoutingError
from .models import (
    PRIORITY_RANK,
    ChannelConfig,
    MessageLog,
    MessageStatus,
    Priority,
    UserChannelPreference,
)

MAX_TITLE = 255


def clean_text(value, field, allow_numbers=False):
    """``value`` as text that every database stores alike, or RoutingError:
    PostgreSQL refuses NUL (SQLite keeps it), a lone surrogate is not UTF-8,
    and anything but text (a list, a dict) is a caller's mistake."""
    if isinstance(value, Promise):  # a lazy translation
        value = str(value)
    if allow_numbers and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise RoutingError(_("%(field)s must be text, not %(type)s.") % {"field": field, "type": type(value).__name__})
    if "\x00" in value:
        raise RoutingError(_("%(field)s contains a NUL character.") % {"field": field})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RoutingError(
            _("%(field)s contains a character that is not valid Unicode (a lone surrogate).") % {"field": field}
        ) from None
    return value


class RoutingResult(dict):
    """``{'TELEGRAM': True, 'EMAIL': False}``: True means the message was
    accepted and queued for that channel (not yet delivered: MessageLog
    tracks delivery); False means it was recorded as SKIPPED, with the reason
    in MessageLog.last_error. ``message_ids`` maps channel -> MessageLog id."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.message_ids = {}

    @property
    def logs(self):
        return MessageLog.objects.filter(pk__in=self.message_ids.values())


class MessageRouter:
    def send_to_user(
        self,
        user,
        title,
        message,
        message_type="announcement",
        priority=None,
        related_object_type="",
        related_object_id="",
        actions=None,
        idempotency_key=None,
        link="",
        context=None,
        channels=None,
    ):
        """Queue a message for one user on each of their enabled channels.

        ``context``: the message's fields by name (``{"number": "OT-00042",
        "asset": "Camión 001"}``), kept in the payload for channels that send
        structured messages (WhatsApp templates take their parameters from it).

        ``channels`` (a list of channel types) sends only on those, and on
        them whatever their minimum priority or "only for failover" setting
        (an escalation step that asks for SMS gets SMS).

        Returns a RoutingResult, e.g. ``{'TELEGRAM': True}`` (True = accepted
        and queued). Raises RoutingError for invalid input, writing nothing.
        """
        if user is None or getattr(user, "pk", None) is None:
            raise RoutingError(_("A saved user is required."))
        spec = self._validate(title, message, message_type, priority, actions)
        related_object_type, related_object_id, link = (
            clean_text(related_object_type or "", "related_object_type", allow_numbers=True),
            clean_text(related_object_id or "", "related_object_id", allow_numbers=True),
            clean_text(link or "", "link"),
        )
        idempotency_key = self._clean_key(idempotency_key)
        prefs = UserChannelPreference.objects.filter(user=user, is_enabled=True)
        if channels is not None:
            spec["channels"] = {str(c) for c in channels}
            prefs = prefs.filter(channel_type__in=spec["channels"])
        prefs = list(prefs)
        if not prefs and not get_user_model().objects.filter(pk=user.pk).exists():
            raise RoutingError(_("User %(pk)r does not exist (deleted?).") % {"pk": user.pk})
        held = holds.held_until([user.pk], spec["priority"], timezone.now())
        plan = self._plan(user, prefs, spec, self._enabled_channels(), held.get(user.pk))
        if not user.is_active:
            # The seed: only active (authenticated) users receive notifications.
            # Recorded, not raised, so the producer's call stands and the
            # operator reads why in MessageLog (broadcasts leave them out).
            reason = _("User %(username)s is inactive: only active users receive notifications.") % {
                "username": user.get_username()}
            plan = [(pref, MessageStatus.SKIPPED, reason, address, None) for pref, _s, _r, address, _h in plan]
        common = self._common_fields(spec, related_object_type, related_object_id, idempotency_key, link)
        if context:
            common["payload"]["context"] = {str(k): "" if v is None else str(v) for k, v in dict(context).items()}
        result = RoutingResult()
        rows = self._write(plan, common)
        for row in rows:
            result[row.channel_type] = row.status in (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.HELD)
            result.message_ids[row.channel_type] = row.pk
        return result

    def send_notification(self, user, notification_data):
        """The seed's dict form: {'title', 'message', 'type', 'priority'?,
        'actions': [{'text', 'callback_data'}], 'related_object_type'?,
        'related_object_id'?, 'idempotency_key'?}. Actions become Telegram
        inline buttons."""
        if not isinstance(notification_data, dict):
            raise RoutingError(_("notification_data must be a dict."))
        data = notification_data
        return self.send_to_user(
            user=user,
            title=data.get("title", ""),
            message=data.get("message", ""),
            message_type=data.get("type", "announcement"),
            priority=data.get("priority"),
            related_object_type=data.get("related_object_type", ""),
            related_object_id=data.get("related_object_id", ""),
            actions=data.get("actions"),
            idempotency_key=data.get("idempotency_key"),
            link=data.get("link", ""),
        )

    def broadcast_to_role(
        self, role_name, title, message, priority="normal", message_type="announcement", idempotency_key=None
    ):
        """Queue a message for every active user with ``role_name``.

        Returns at once, whatever the number of recipients: it counts them with
        SQL and writes one RoleBroadcast inside the caller's transaction; after
        commit a worker expands it into MessageLog rows in batches, with the
        same policy as ``send_to_user`` (notifications.role_broadcasts). A
        repeated call with the same ``idempotency_key`` returns the first
        call's counts and sends nothing again.

        Returns ``{'total': N, 'success': S, 'failed': F}`` (with
        ``.broadcast_id``): failed counts the users that cannot be reached (no
        enabled, reachable channel), not later delivery failures, which
        MessageLog records. A malformed address is found only at expansion (a
        SKIPPED row), so such a user counts as a success here.
        """
        roles = {choice[0] for choice in get_user_model()._meta.get_field("role").choices}
        if not isinstance(role_name, str) or role_name not in roles:
            raise RoutingError(_("Unknown role %(role)r. Known roles: %(roles)s") % {
                "role": role_name, "roles": ", ".join(sorted(roles))})
        spec = self._validate(title, message, message_type, priority, None)
        idempotency_key = self._clean_key(idempotency_key)
        return role_broadcasts.create(self, role_name, spec, idempotency_key)

    # -- policy ---------------------------------------------------------------
    def _validate(self, title, message, message_type, priority, actions):
        mtype = message_types.get(clean_text(message_type, "message_type"))
        if message is None:
            raise RoutingError(_("The message is empty."))
        message = clean_text(message, "message", allow_numbers=True)
        if not message.strip():
            raise RoutingError(_("The message is empty."))
        title = "" if title is None else clean_text(title, "title", allow_numbers=True)
        if len(title) > MAX_TITLE:
            raise RoutingError(_("The title is longer than %(max)d characters.") % {"max": MAX_TITLE})
        priority = priority or mtype.default_priority
        if not isinstance(priority, str) or priority not in Priority.values:
            raise RoutingError(
                _("Unknown priority %(priority)r. Use one of: %(choices)s")
                % {"priority": priority, "choices": ", ".join(Priority.values)}
            )
        return {
            "type": mtype,
            "title": title,
            "body": message,
            "priority": priority,
            "actions": self._validate_actions(actions),
        }

    def _validate_actions(self, actions):
        if not actions:
            return []
        if not isinstance(actions, (list, tuple)):
            raise RoutingError(_("actions must be a list of {'text', 'callback_data'}."))
        clean = []
        for action in actions:
            if not isinstance(action, dict) or not action.get("text") or not action.get("callback_data"):
                raise RoutingError(_("Each action needs 'text' and 'callback_data'."))
            data = clean_text(action["callback_data"], "callback_data", allow_numbers=True)
            text = clean_text(action["text"], "text", allow_numbers=True)
            if len(data.encode()) > MAX_CALLBACK_DATA_BYTES:
                raise RoutingError(
                    _("callback_data %(data)r is %(n)d bytes; Telegram allows at most %(max)d.")
                    % {"data": data, "n": len(data.encode()), "max": MAX_CALLBACK_DATA_BYTES}
                )
            clean.append({"text": text, "callback_data": data})
        return clean

    @staticmethod
    def _clean_key(idempotency_key):
        if idempotency_key in (None, ""):
            return None
        return clean_text(idempotency_key, "idempotency_key", allow_numbers=True)

    def _enabled_channels(self):
        """Registered channels (those with a delivery adapter) not switched off.
        A preference for another channel is recorded as SKIPPED, so the
        operator sees why nothing went out."""
        configs = dict(ChannelConfig.objects.values_list("channel_type", "is_enabled"))
        # No row yet means the channel was never switched off.
        return {c for c in registry.channel_types() if configs.get(c, True)}

    def _plan(self, user, prefs, spec, enabled_channels, held_until=None):
        """[(pref, status, reason, address, next_attempt_at)] for one user;
        opted-out channels are left out. ``address`` is normalized by the
        channel when valid. ``held_until``: the user is off shift (HELD)."""
        mtype, rank = spec["type"], PRIORITY_RANK[spec["priority"]]
        named = spec.get("channels")
        plan = []
        now = timezone.now()
        for pref in prefs:
            if not getattr(pref, mtype.preference_flag):
                continue
            if named is None and (pref.failover_only or rank < PRIORITY_RANK[pref.min_priority]):
                continue
            # Muted (the bot's /silencio): left out like an opt-out; critical still goes.
            if pref.muted_until and pref.muted_until > now and spec["priority"] != Priority.CRITICAL:
                continue
            status, reason = MessageStatus.QUEUED, ""
            address = pref.channel_user_id.strip()
            if pref.channel_type not in enabled_channels:
                status, reason = MessageStatus.SKIPPED, _("Channel %(channel)s is disabled or not available.") % {
                    "channel": pref.channel_type}
            elif not pref.is_reachable:
                status, reason = MessageStatus.SKIPPED, _("Address marked unreachable: %(reason)s") % {
                    "reason": pref.unreachable_reason}
            elif pref.opted_out_at:
                status, reason = MessageStatus.SKIPPED, _("The recipient opted out (STOP) on %(date)s.") % {
                    "date": timezone.localtime(pref.opted_out_at).strftime("%d/%m/%Y %H:%M")}
            else:
                channel_spec = registry.get(pref.channel_type)
                try:
                    address = channel_spec.normalize_address(pref.channel_user_id)
                except registry.InvalidAddress as exc:
                    status, reason = MessageStatus.SKIPPED, str(exc)
                else:
                    if channel_spec.delivered_on_write:
                        status = MessageStatus.SENT
                    elif held_until is not None and channel_spec.holdable:
                        status = MessageStatus.HELD
            plan.append((pref, status, reason, address, held_until if status == MessageStatus.HELD else None))
        return plan

    def _common_fields(self, spec, related_object_type, related_object_id, idempotency_key, link):
        payload = {}
        if spec["actions"]:
            payload["actions"] = spec["actions"]
        if link:
            payload["link"] = str(link)
        return {
            "message_type": spec["type"].key,
            "title": spec["title"],
            "body": spec["body"],
            "priority": spec["priority"],
            "payload": payload,
            "related_object_type": str(related_object_type or "")[:50],
            "related_object_id": str(related_object_id or "")[:64],
            "idempotency_key": str(idempotency_key)[:200] if idempotency_key else None,
        }

    def _write(self, plan, common, publish=True, prepared=None):
        """Insert the rows (one transaction, savepoint inside the caller's) and
        publish the queued ones after the outermost commit (``publish=False``:
        the caller publishes them, as a broadcast's expansion does).
        ``prepared``: this plan's rows from ``_prepare_write``, built and their
        INSERT compiled before the caller took its lock."""
        if not plan:
            return []
        rows = prepared.rows if prepared is not None else self._rows(plan, common)
        with transaction.atomic():
            if prepared is not None:
                prepared.run()
                for row in rows:
                    row._created = True
            elif common["idempotency_key"]:
                rows = self._insert_idempotent(rows, common["idempotency_key"])
            else:
                MessageLog.objects.bulk_create(rows, batch_size=1000)
                for row in rows:
                    row._created = True
            # A SKIPPED row (an inactive user, a disabled channel) was not delivered: no inbox entry.
            self._on_write([row for row in rows if row._created and row.status != MessageStatus.SKIPPED])
        queued = [(row.pk, row.channel_type) for row in rows if row._created and row.status == MessageStatus.QUEUED]
        if queued and publish:  # registered in the caller's transaction, after the rows' savepoint
            dispatch.publish_on_commit(queued)
        return rows

    def _prepare_write(self, plan, common):
        """The rows of ``plan`` and their INSERT statements compiled now (the
        Python half of a bulk insert: 1,000 rows are ~30,000 values to adapt),
        for ``_write(..., prepared=...)`` to run later; None (``_write`` then
        does it all) with an idempotency key, whose conflicts are settled row
        by row, or when the backend cannot return the new ids of a bulk insert."""
        if not plan or common["idempotency_key"] or not connection.features.can_return_rows_from_bulk_insert:
            return None
        return PreparedInsert(self._rows(plan, common))

    @staticmethod
    def _rows(plan, common):
        now = timezone.now()
        return [
            MessageLog(
                user_id=pref.user_id,
                channel_type=pref.channel_type,
                recipient=address,
                status=status,
                last_error=reason,
                created_at=now,
                updated_at=now,
                next_attempt_at=hold or now,
                sent_at=now if status == MessageStatus.SENT else None,
                **common,
            )
            for pref, status, reason, address, hold in plan
        ]

    def _insert_idempotent(self, rows, key):
        """The unique constraint (key, user, channel) decides, not a prior
        lookup: a row that already exists is returned as it is and is not
        published again by this call. All rows in one insert first (a new
        key: the usual case, and a broadcast's batch); row by row only when
        some already exist."""
        try:
            with transaction.atomic():
                MessageLog.objects.bulk_create(rows, batch_size=1000)
        except IntegrityError:
            for row in rows:  # rolled back: insert them again one by one
                row.pk = None
                row._state.adding = True
        else:
            for row in rows:
                row._created = True
            return rows
        result = []
        for row in rows:
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
                row._created = True
            except IntegrityError:
                row = MessageLog.objects.get(idempotency_key=key, user_id=row.user_id, channel_type=row.channel_type)
                row._created = False
            result.append(row)
        return result

    @staticmethod
    def _on_write(rows):
        """Let each channel store what it keeps beside the row (the in-app
        inbox entry), in this transaction."""
        by_channel = {}
        for row in rows:
            by_channel.setdefault(row.channel_type, []).append(row)
        for channel_type, channel_rows in by_channel.items():
            if registry.is_registered(channel_type) and registry.get(channel_type).on_write:
                registry.get(channel_type).on_write(channel_rows)


class PreparedInsert:
    """A bulk insert of new MessageLog rows in two steps: the statements are
    compiled at once (what ``bulk_create`` does per batch: defaults, every
    value adapted for the database), and executed by ``run()``, each with
    RETURNING for the new ids, as ``bulk_create`` does. A broadcast's
    expansion compiles before it takes the record's lock: on SQLite, the
    database's write lock, which the delivery workers' claims wait for."""

    def __init__(self, rows, using="default"):
        self.rows = rows
        self.using = using
        manager = MessageLog.objects.db_manager(using)
        manager.get_queryset()._prepare_for_bulk_create(rows)
        opts = MessageLog._meta
        fields = [f for f in opts.concrete_fields if not f.generated and not isinstance(f, AutoField)]
        ops = connections[using].ops
        size = min(1000, max(ops.bulk_batch_size(fields, rows), 1))
        self.returning = opts.db_returning_fields
        self.batches = []
        for start in range(0, len(rows), size):
            objs = rows[start : start + size]
            query = InsertQuery(MessageLog)
            query.insert_values(fields, objs)
            compiler = query.get_compiler(using=using)
            compiler.returning_fields = self.returning
            statements = compiler.as_sql()
            compiler.as_sql = lambda statements=statements: statements  # execute_sql runs these
            self.batches.append((compiler, objs))

    def run(self):
        for compiler, objs in self.batches:
            returned = compiler.execute_sql(self.returning)
            for obj, values in zip(objs, returned, strict=True):
                for value, field in zip(values, self.returning, strict=True):
                    setattr(obj, field.attname, value)
                obj._state.adding = False
                obj._state.db = self.using

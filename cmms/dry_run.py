"""A dry run of escalation: who would be notified, when and how, for an order
of a given priority on an asset at a given moment. Computed from the real
policies, shifts and channel preferences; writes nothing.

Each step says whom it reaches and on which channels, and warns when it can
never reach anyone: nobody to notify, nobody with a usable channel, or
everyone off shift for a priority that waits for the shift.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.utils.translation import gettext as _

from notifications import message_types
from notifications.channels import registry
from notifications.models import PRIORITY_RANK, ChannelConfig, UserChannelPreference

from . import escalation, messages, shifts
from .models import StepAction, WorkOrder


@dataclass
class Reach:
    user: object
    channels: list
    held_until: object = None

    @property
    def waiting(self):
        """Channels that would wait for the shift (the inbox never waits: it wakes nobody)."""
        if self.held_until is None:
            return []
        return [c for c in self.channels if registry.get(c).holdable]

    @property
    def at_once(self):
        return [c for c in self.channels if c not in self.waiting]

    @property
    def wakes(self):
        """Reaches the person now on a channel that can wake them."""
        return any(registry.get(c).holdable for c in self.at_once)


@dataclass
class DryRunStep:
    at: object
    label: str
    people: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def channels_for(user, priority, message_type, named=None):
    """The channels a message would use for ``user`` (as the router decides)."""
    flag = message_types.get(message_type).preference_flag
    switched_off = set(ChannelConfig.objects.filter(is_enabled=False).values_list("channel_type", flat=True))
    usable = []
    for pref in UserChannelPreference.objects.filter(user=user, is_enabled=True, is_reachable=True):
        if named is not None and pref.channel_type not in named:
            continue
        if named is None and (pref.failover_only or PRIORITY_RANK[priority] < PRIORITY_RANK[pref.min_priority]):
            continue
        if not getattr(pref, flag) or pref.channel_type in switched_off or not registry.is_registered(pref.channel_type):
            continue
        try:
            registry.normalize_address(pref.channel_type, pref.channel_user_id)
        except registry.InvalidAddress:
            continue
        usable.append(pref.channel_type)
    return sorted(usable)


def _reach(users, priority, at, message_type, named=None):
    held = shifts.held_until([u.pk for u in users], priority, at)
    return [Reach(u, channels_for(u, priority, message_type, named), held.get(u.pk)) for u in users]


def _warn(step):
    if not step.people:
        step.warnings.append(_("Nobody to notify at this step."))
        return
    if not any(p.channels for p in step.people):
        step.warnings.append(_("Nobody here has a linked channel that this message can use."))
    elif not any(p.wakes for p in step.people):
        step.warnings.append(_("Everyone reachable is off shift: the message waits for the next shift."))


def simulate(priority, asset, at):
    """[DryRunStep], the assignment first, then each step of the policy."""
    from .predictions import choose_operator, supervisors_for

    with messages.default_language():
        order = WorkOrder(asset=asset, priority=priority)
        policy = escalation.policy_for(order)
        assignee = choose_operator(asset)
        first = DryRunStep(at, _("Assignment (the alert, with the buttons)"))
        if assignee:
            first.people = _reach([assignee], priority, at, "work_order_assigned")
        _warn(first)
        result = [first]
        when = at
        for n, step in enumerate(escalation.build_chain(policy), start=1):
            when = when + timedelta(seconds=step["wait_s"])
            label = _("Step %(n)d: %(action)s") % {"n": n, "action": StepAction(step["action"]).label}
            current = DryRunStep(when, label)
            named = step["channels"] or None
            if step["action"] == StepAction.NOTIFY_ASSIGNEE and assignee:
                current.people = _reach([assignee], priority, when, escalation.REMINDER_TYPE, named)
            elif step["action"] in (StepAction.NOTIFY_ASSIGNEE, StepAction.NOTIFY_SUPERVISORS):
                current.people = _reach(supervisors_for(asset), priority, when, escalation.REMINDER_TYPE, named)
            elif step["action"] == StepAction.REASSIGN:
                following = choose_operator(asset, exclude=[assignee.pk] if assignee else [])
                if following:
                    assignee = following
                    current.people = _reach([following], priority, when, "work_order_assigned")
            _warn(current)
            result.append(current)
        if policy is None:
            result[0].warnings.append(_("No escalation policy for this priority: nobody is reminded."))
        return result

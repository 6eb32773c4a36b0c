"""cmms.actions.decide: one place decides who may accept or reject a work
order and what happens, whatever channel the press came from."""

import threading

import pytest
from django.db import connection

from cmms import actions
from cmms.models import WorkOrder
from tests.factories import make_user
from tests.support.cmms import make_asset, make_operator, make_work_order

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


@pytest.fixture
def assigned():
    asset = make_asset(site="Mina Norte")
    operator = make_operator(site="Mina Norte", first_name="Juan", last_name="Pérez")
    order = make_work_order(asset=asset)
    order.assign(operator)
    return order, operator


def test_the_assignee_accepts_and_the_order_records_who_when_and_via_which_channel(assigned):
    order, operator = assigned
    result = actions.decide(order.pk, operator, actions.ACCEPT, via="TELEGRAM", offered_seq=order.assignment_seq)
    order.refresh_from_db()
    assert result.changed
    assert (order.status, order.decided_by, order.decided_via) == ("ACCEPTED", operator, "TELEGRAM")
    assert order.accepted_at == order.decided_at
    assert "Juan Pérez" in result.message
    assert order.number in result.message


def test_a_second_press_changes_nothing_and_says_it_was_already_done(assigned):
    order, operator = assigned
    actions.decide(order.pk, operator, actions.ACCEPT, via="TELEGRAM")
    again = actions.decide(order.pk, operator, actions.ACCEPT, via="TELEGRAM")
    assert not again.changed
    assert WorkOrder.objects.get(pk=order.pk).status == "ACCEPTED"


def test_someone_else_cannot_act_and_nothing_changes(assigned):
    order, _operator = assigned
    other = make_operator(site="Mina Norte")
    with pytest.raises(actions.ActionRefused, match=order.number):
        actions.decide(order.pk, other, actions.ACCEPT, via="TELEGRAM")
    assert WorkOrder.objects.get(pk=order.pk).status == "ASSIGNED"


def test_a_supervisor_may_decide_for_the_assignee(assigned):
    order, _operator = assigned
    supervisor = make_user(role="SUPERVISOR")
    assert actions.decide(order.pk, supervisor, actions.ACCEPT, via="ADMIN").changed


def test_an_inactive_assignee_cannot_act(assigned):
    order, operator = assigned
    operator.is_active = False
    operator.save()
    with pytest.raises(actions.ActionRefused):
        actions.decide(order.pk, operator, actions.ACCEPT, via="TELEGRAM")


def test_a_stale_offer_from_before_a_reassignment_is_refused(assigned):
    order, operator = assigned
    stale_seq = order.assignment_seq
    other = make_operator(site="Mina Norte")
    order.assign(other)
    order.assign(operator)  # back to the first operator, by a new offer
    with pytest.raises(actions.ActionRefused, match="ya no está vigente"):
        actions.decide(order.pk, operator, actions.ACCEPT, via="TELEGRAM", offered_seq=stale_seq)


def test_an_order_that_moved_on_is_refused_with_its_status(assigned):
    order, operator = assigned
    order.cancel()
    with pytest.raises(actions.ActionRefused, match="cancel"):
        actions.decide(order.pk, operator, actions.ACCEPT, via="TELEGRAM")


def test_an_unknown_order_or_action_is_refused():
    user = make_operator()
    with pytest.raises(actions.ActionRefused):
        actions.decide(999999, user, actions.ACCEPT, via="TELEGRAM")
    with pytest.raises(actions.ActionRefused):
        actions.decide(999999, user, "explode", via="TELEGRAM")


def test_rejecting_reassigns_to_the_next_operator_never_the_one_who_rejected(assigned, no_broker):
    order, operator = assigned
    following = make_operator(site="Mina Norte")
    result = actions.decide(order.pk, operator, actions.REJECT, via="TELEGRAM", reason="Sin repuesto")
    order.refresh_from_db()
    assert result.reassigned_to == following
    assert (order.status, order.assignee) == ("ASSIGNED", following)


def test_rejecting_with_nobody_else_leaves_it_rejected_and_says_so(assigned):
    order, operator = assigned
    result = actions.decide(order.pk, operator, actions.REJECT, via="SMS", reason="Sin repuesto")
    order.refresh_from_db()
    assert result.reassigned_to is None
    assert (order.status, order.rejection_reason, order.decided_via) == ("REJECTED", "Sin repuesto", "SMS")
    assert "supervisor" in result.message


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_presses_make_exactly_one_transition():
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serializes writers; the row lock is what PostgreSQL proves here")
    asset = make_asset()
    operator = make_operator()
    order = make_work_order(asset=asset)
    order.assign(operator)
    results, barrier = [], threading.Barrier(2)

    def press():
        barrier.wait()
        try:
            results.append(actions.decide(order.pk, operator, actions.ACCEPT, via="TELEGRAM").changed)
        finally:
            connection.close()

    threads = [threading.Thread(target=press) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]

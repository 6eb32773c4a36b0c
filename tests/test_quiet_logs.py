"""make run's log is about work: the housekeeping tasks that run every few
seconds do not log at INFO when they had nothing to do."""

import logging

import pytest
from celery.app import trace

from workers import quiet_logs


@pytest.fixture(autouse=True)
def installed():
    quiet_logs.install()  # celery_app installs it at import; installing twice is harmless


def emit_task_lines(task, result="{'due': 0, 'published': 0, 'reclaimed': 0, 'broker_reset': 0}"):
    context = {"id": "abc", "name": task, "return_value": result, "runtime": 0.01}
    logging.getLogger("celery.worker.strategy").info(trace.LOG_RECEIVED, context)
    logging.getLogger("celery.app.trace").info(trace.LOG_SUCCESS, context)
    logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", "relay-outbox", task)


@pytest.mark.parametrize("task", sorted(quiet_logs.HOUSEKEEPING_TASKS))
def test_housekeeping_receipt_success_and_beat_lines_are_not_logged_at_info(task, caplog):
    with caplog.at_level(logging.INFO):
        emit_task_lines(task)
    assert caplog.records == []


def test_a_relay_that_did_something_still_logs_its_result(caplog):
    with caplog.at_level(logging.INFO):
        emit_task_lines("workers.relay_inbound", result="{'republished': 3}")
    assert [r.getMessage() for r in caplog.records] == [
        "Task workers.relay_inbound[abc] succeeded in 0.01s: {'republished': 3}"]


def test_delivery_tasks_are_still_logged(caplog):
    with caplog.at_level(logging.INFO):
        emit_task_lines("workers.deliver_message")
    assert len(caplog.records) == 3


def test_a_housekeeping_failure_is_still_logged(caplog):
    context = {"id": "abc", "name": "workers.relay_outbox", "description": "raised unexpected", "exc": "boom"}
    with caplog.at_level(logging.INFO):
        logging.getLogger("celery.app.trace").error(trace.LOG_FAILURE, context)
    assert [r.levelname for r in caplog.records] == ["ERROR"]


def test_at_debug_nothing_is_dropped(caplog):
    with caplog.at_level(logging.DEBUG):
        for name in ("celery.worker.strategy", "celery.app.trace", "celery.beat"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        try:
            emit_task_lines("workers.relay_outbox")
        finally:
            for name in ("celery.worker.strategy", "celery.app.trace", "celery.beat"):
                logging.getLogger(name).setLevel(logging.NOTSET)
    assert len(caplog.records) == 3


def test_make_run_gives_every_process_the_project_time_zone(monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "run_all.py"
    spec = importlib.util.spec_from_file_location("run_all_under_test", path)
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    monkeypatch.setenv("TIME_ZONE", "Europe/Madrid")
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("SITE_URL", raising=False)
    env = run_all.Supervisor(run_all.parse_args(["--web-port", "8100"])).base_env()
    assert env["TZ"] == "Europe/Madrid" and env["SITE_URL"] == "http://127.0.0.1:8100"

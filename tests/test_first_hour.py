"""A newcomer's first hour: `make run` in one terminal, the README's and the
seed's commands in a second one.

The end-to-end test starts scripts/run_all.py for real (its own SQLite file
and var/ directory, free ports, the session's private Redis) and runs
manage.py commands as separate processes that know nothing but the project
directory, as a second terminal would.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
# What a second terminal must not inherit from the test run.
SCRUB = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "TELEGRAM_API_URL", "TELEGRAM_BOT_TOKEN", "SITE_URL",
         "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_URL", "TWILIO_FROM_NUMBER", "WHATSAPP_ACCESS_TOKEN",
         "WHATSAPP_API_URL", "WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_APP_SECRET",
         "CMMS_ENV_FILES", "CMMS_ENV_FILE", "CMMS_VAR_DIR", "LANGUAGE_CODE", "SQLITE_TEST_NAME", "DJANGO_SETTINGS_MODULE")


def clean_env(var_dir, **extra):
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env.update(CMMS_VAR_DIR=str(var_dir), CMMS_ENV_FILE=str(var_dir / "dot.env"), CMMS_ENV_FILES="1",
               PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def manage(env, *args, timeout=60):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def site_url(env):
    return manage(env, "shell", "-c", "from django.conf import settings; print(settings.SITE_URL)").stdout.split()[-1]


# -- .env and var/run.env ------------------------------------------------------


def test_dotenv_is_read_and_the_real_environment_wins(tmp_path):
    (tmp_path / "dot.env").write_text('SITE_URL=http://from-dotenv:9000\nTIME_ZONE="Europe/Madrid"\n')
    env = clean_env(tmp_path)
    assert site_url(env) == "http://from-dotenv:9000"
    assert site_url({**env, "SITE_URL": "http://from-env:1"}) == "http://from-env:1"


def test_run_env_is_read_after_dotenv_and_only_while_make_run_lives(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run.env").write_text(f'CMMS_RUN_PID={sleeper.pid}\nSITE_URL="http://127.0.0.1:8100"\n')
        env = clean_env(tmp_path)
        assert site_url(env) == "http://127.0.0.1:8100"
        (tmp_path / "dot.env").write_text("SITE_URL=http://users-own:1\n")
        assert site_url(env) == "http://users-own:1"  # the user's .env wins over what make run chose
        (tmp_path / "dot.env").unlink()
    finally:
        sleeper.kill()
        sleeper.wait()
    # The make run that wrote it is gone (killed before it could clean up): ignored.
    assert site_url(env) == "http://127.0.0.1:8000"


def test_env_files_are_skipped_under_pytest_so_a_running_make_run_cannot_leak_in():
    from django.conf import settings

    assert os.environ.get("CMMS_ENV_FILES") == "0" and settings.ENV_FILE_ORIGINS == {}


# -- make run, then a second terminal -------------------------------------------


@pytest.mark.e2e
def test_a_second_terminal_talks_to_what_make_run_started(tmp_path, redis_server):
    web, sandbox, flower, twilio, whatsapp = free_port(), free_port(), free_port(), free_port(), free_port()
    run_env = clean_env(tmp_path, REDIS_URL=redis_server.url, WEB_PORT=web, SANDBOX_PORT=sandbox, FLOWER_PORT=flower,
                        TWILIO_SANDBOX_PORT=twilio, WHATSAPP_SANDBOX_PORT=whatsapp,
                        RUN_ALL_STOP_TIMEOUT=10, DEMO_PASSWORD="demo1234")
    log = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen([sys.executable, "scripts/run_all.py", "--no-flower", "--no-beat"], cwd=ROOT,
                            env=run_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def output():
        log.flush()
        return (tmp_path / "run.log").read_text(errors="replace")

    try:
        def running():
            if proc.poll() is not None:
                raise AssertionError(f"run_all exited with {proc.returncode}:\n{output()[-3000:]}")
            return "CMMS omnichannel bot is running" in output()

        wait_for(running, timeout=180, interval=0.2, message="the make run banner")
        published = (tmp_path / "run.env").read_text()
        assert f"SITE_URL=\"http://127.0.0.1:{web}\"" in published and redis_server.url in published
        assert f"TWILIO_API_URL=\"http://127.0.0.1:{twilio}\"" in published
        assert f"WHATSAPP_API_URL=\"http://127.0.0.1:{whatsapp}/v21.0\"" in published

        # A second terminal: only the project directory, no variables of make run.
        term = clean_env(tmp_path)
        status = manage(term, "setup_telegram_bot")
        assert status.returncode == 0, status.stderr
        assert "Origen del token: el sandbox local iniciado por make run (var/run.env)" in status.stdout
        assert f"URL de la API: http://127.0.0.1:{sandbox}" in status.stdout

        sent = manage(term, "test_telegram_bot", "--username", "operador1")
        assert sent.returncode == 0, sent.stderr
        assert "Enviado al chat 100001" in sent.stdout

        # The sandbox knows exactly the demo users' chats, as Telegram knows only chats that said /start.
        unknown = manage(term, "test_telegram_bot", "--chat-id", "999999999")
        assert unknown.returncode == 1
        assert "«Bad Request: chat not found»" in unknown.stderr
        assert "el usuario no ha iniciado un chat con el bot" in unknown.stderr

        # Links in alerts point where this run serves.
        assert site_url(term) == f"http://127.0.0.1:{web}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert proc.returncode == 0, output()[-3000:]
    assert not (tmp_path / "run.env").exists(), "make run must take var/run.env away when it stops"
    # After make run stopped, a second terminal is on its own again (no stale sandbox token).
    assert "100000:sandbox-token-not-secret" not in manage(clean_env(tmp_path), "shell", "-c",
                                                           "from django.conf import settings; "
                                                           "print(settings.TELEGRAM_BOT_TOKEN)").stdout


def test_make_run_with_a_rabbitmq_broker_that_does_not_answer_says_so_before_starting_anything(tmp_path, redis_server):
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    env = clean_env(tmp_path, REDIS_URL=redis_server.url, CELERY_BROKER_URL=dead, WEB_PORT=free_port(),
                    SANDBOX_PORT=free_port(), FLOWER_PORT=free_port(), TWILIO_SANDBOX_PORT=free_port(),
                    WHATSAPP_SANDBOX_PORT=free_port())
    done = subprocess.run([sys.executable, "scripts/run_all.py", "--no-flower", "--no-beat"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "names RabbitMQ, and nothing answers there" in done.stdout + done.stderr
    assert "guest:***@" in done.stdout + done.stderr and "guest:guest" not in done.stdout + done.stderr
    assert "applying migrations" not in done.stdout + done.stderr

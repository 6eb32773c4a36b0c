"""Safe defaults: DEBUG off unless asked for, error reports without secrets,
no well-known demo password on a server."""

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import RequestFactory
from django.utils.module_loading import import_string

from cmms.error_reports import SecretsHidingFilter
from notifications.redaction import redact, register_secret


def settings_value(name, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    out = subprocess.run([sys.executable, "-c", code], env={**clean, "DJANGO_SETTINGS_MODULE": "cmms.settings", **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_debug_is_off_unless_the_environment_turns_it_on():
    assert settings_value("DEBUG") == "False"
    assert settings_value("DEBUG", DJANGO_DEBUG="1") == "True"


def test_a_debug_page_shows_no_connection_password_or_provider_secret(settings):
    # Built at run time: the page also shows this test's source lines.
    secrets = [f"{name}{4711 + i}" for i, name in enumerate(("dbpass", "mailpass", "redispass", "tgsecret", "mlkey"))]
    settings.DEBUG = True
    settings.DATABASE_URL = f"postgres://cmms:{secrets[0]}@db.internal:5432/cmms"
    settings.EMAIL_URL = f"smtp://mailer:{secrets[1]}@smtp.example:587"
    settings.REDIS_URL = f"redis://:{secrets[2]}@cache:6379/0"
    settings.TELEGRAM_BOT_TOKEN = f"123456:{secrets[3]}-abcdefgh"
    register_secret(settings.TELEGRAM_BOT_TOKEN)
    request = RequestFactory().get("/api/ml/predictions/", HTTP_AUTHORIZATION=f"Bearer mlk_ab.{secrets[4]}",
                                   DATABASE_URL=settings.DATABASE_URL)  # runserver copies the environment to META
    try:
        connection_url = settings.DATABASE_URL  # noqa: F841 - a local variable in the traceback
        raise RuntimeError(f"cannot reach {settings.REDIS_URL}")
    except RuntimeError:
        reporter = import_string(django_settings.DEFAULT_EXCEPTION_REPORTER)(request, *sys.exc_info())
        html, text = reporter.get_traceback_html(), reporter.get_traceback_text()
    for secret in secrets:
        assert secret not in html and secret not in text
    assert "db.internal" in html or "DATABASE_URL" in html  # the page is still useful


def test_the_filter_is_the_project_default(settings):
    assert settings.DEFAULT_EXCEPTION_REPORTER_FILTER == "cmms.error_reports.SecretsHidingFilter"
    assert SecretsHidingFilter().is_active(None)


def test_a_token_echoed_url_encoded_or_only_its_secret_half_is_redacted():
    register_secret("987654:HalfSecretPart-xyz123")
    assert "HalfSecretPart" not in redact("url /bot987654%3AHalfSecretPart-xyz123/getMe")
    assert "HalfSecretPart" not in redact("the server said: HalfSecretPart-xyz123 is invalid")
    assert "Secret" not in redact("an unknown token 555555%3AOtherSecret-abcdef echoed encoded")


@pytest.mark.django_db
def test_bootstrap_demo_never_sets_admin_admin_with_debug_off(settings, capsys):
    from django.contrib.auth import get_user_model

    settings.DEBUG = False
    call_command("bootstrap_demo")
    admin = get_user_model().objects.get(username="admin")
    assert not admin.check_password("admin")
    assert not get_user_model().objects.get(username="operador1").check_password("demo1234")
    out = capsys.readouterr().out
    password = out.split("admin / ", 1)[1].split()[0]
    assert admin.check_password(password)  # told once, to the one who ran it
    call_command("bootstrap_demo")
    assert "admin / ********" in capsys.readouterr().out  # not a new random one that was never set


@pytest.mark.django_db
def test_bootstrap_demo_keeps_the_demo_passwords_for_make_run(settings):
    from django.contrib.auth import get_user_model

    settings.DEBUG = True
    call_command("bootstrap_demo")
    assert get_user_model().objects.get(username="admin").check_password("admin")

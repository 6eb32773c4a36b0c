"""What a debug page or an error mail may show.

Django's filter hides settings whose *name* says secret (KEY, TOKEN,
PASS...). Ours also hides the connection URLs, which carry passwords in
their *value* (``DATABASE_URL=postgres://cmms:secret@db/cmms``), in settings,
in ``request.META`` (runserver copies the whole environment into it) and in
the traceback's local variables, and every provider secret the process knows
(``notifications.redaction``).
"""

import re

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from notifications.redaction import redact

# Names whose values are hidden whatever they hold.
_SECRET_NAMES = re.compile(
    r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|AUTHORIZATION|_URL$|^DATABASES?$|DSN|BROKER|CELERY_RESULT",
    flags=re.IGNORECASE,
)
# user:password@ in any URL.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.IGNORECASE)


def scrub(text):
    return _URL_PASSWORD.sub(r"\g<scheme>\g<user>:********@", redact(text))


class SecretsHidingFilter(SafeExceptionReporterFilter):
    hidden_settings = _SECRET_NAMES

    def is_active(self, request):
        return True  # also with DEBUG on: that is when the page is shown

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return scrub(cleansed)
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [
            (name, self.cleansed_substitute if self.hidden_settings.search(name) else self._scrub_value(value))
            for name, value in variables
        ]

    def _scrub_value(self, value):
        if isinstance(value, str):
            return scrub(value)
        # Plain containers only: repr() of a QuerySet would run its query.
        if isinstance(value, dict | list | tuple | set | bytes):
            try:
                text = repr(value)
            except Exception:  # noqa: BLE001 - an odd object inside: hide it rather than fail the report
                return self.cleansed_substitute
            if scrub(text) != text:
                return self.cleansed_substitute
        return value


class SecretsHidingReporter(ExceptionReporter):
    """The exception's own message, shown at the top of the page and in the
    text report, goes through the same scrub (``cannot reach redis://:pw@...``)."""

    def get_traceback_data(self):
        data = super().get_traceback_data()
        for key in ("exception_value", "request_repr"):
            if isinstance(data.get(key), str):
                data[key] = scrub(data[key])
        for frame in data.get("frames", []):
            for key in ("exc_cause", "exc_context"):
                if frame.get(key) is not None:
                    frame[key] = scrub(frame[key])
        return data

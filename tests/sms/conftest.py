"""The Twilio sandbox in-process, and this process's settings pointed at it."""

import pytest

from sandbox.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM, TwilioSandbox


@pytest.fixture(scope="session")
def twilio_server():
    server = TwilioSandbox(port=0).start()
    yield server
    server.stop()


@pytest.fixture
def twilio(twilio_server, settings):
    """The session's Twilio sandbox, emptied, default config, no pace limit
    (tests that test the pace turn it on); settings point at it."""
    twilio_server.reset(config=True)
    twilio_server.configure(limits_enabled=False)
    settings.TWILIO_API_URL = twilio_server.url
    settings.TWILIO_ACCOUNT_SID = DEFAULT_ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = DEFAULT_AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER = DEFAULT_FROM
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    from workers import channels

    channels.reset()
    yield twilio_server
    channels.reset()

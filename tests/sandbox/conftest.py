"""Fixtures for the sandbox's own tests: no Django, no Redis.

The sandbox runs in-process on a free port; tests talk to it over real HTTP
with ``requests``, exactly as the Telegram channel does.
"""

import pytest
import requests

from sandbox import TelegramSandbox

TOKEN = "123456:AAE-sandbox_token_0123"
OTHER_TOKEN = "654321:AAE-other_token_45678"


class Bot:
    """A tiny Bot API client for one token."""

    def __init__(self, sandbox, token=TOKEN):
        self.sandbox = sandbox
        self.token = token
        self.session = requests.Session()

    def url(self, method):
        return f"{self.sandbox.url}/bot{self.token}/{method}"

    def call(self, method, http_timeout=10, **params):
        """POST the parameters as JSON (what the product's channel does)."""
        return self.session.post(self.url(method), json=params, timeout=http_timeout)

    def form(self, method, files=None, **params):
        """POST form-encoded (or multipart when ``files`` is given)."""
        return self.session.post(self.url(method), data=params, files=files, timeout=10)

    def send(self, chat_id, text="hola", **params):
        return self.call("sendMessage", chat_id=chat_id, text=text, **params)


@pytest.fixture(scope="module")
def running_sandbox():
    server = TelegramSandbox().start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(running_sandbox):
    """The module's sandbox with default config and nothing in it."""
    running_sandbox.reset(config=True)
    return running_sandbox


@pytest.fixture
def bot(sandbox):
    client = Bot(sandbox)
    yield client
    client.session.close()


@pytest.fixture
def control(sandbox):
    """``control("get", "stats")`` -> parsed JSON of the control API."""
    session = requests.Session()

    def call(verb, path, **kwargs):
        response = session.request(verb.upper(), f"{sandbox.url}/_sandbox/{path}", timeout=10, **kwargs)
        return response

    yield call
    session.close()

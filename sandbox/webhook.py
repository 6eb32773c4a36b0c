"""Posts pending updates to the webhook, one at a time, like Telegram.

Only loopback URLs are ever accepted (checked by setWebhook), so this thread
never contacts another machine. A non-2xx answer or a connection error is
retried ``webhook_max_attempts`` times, ``webhook_retry_delay_s`` apart; then
the update is dropped and the error shows in getWebhookInfo.
"""

import http.client
import json
import ssl
import threading
import time
import urllib.parse

__all__ = ["WebhookDispatcher"]


class WebhookDispatcher:
    def __init__(self, state):
        self.state = state
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="telegram-sandbox-webhook", daemon=True)
        self._thread.start()

    def join(self, timeout=None):
        if self._thread is not None:
            self._thread.join(timeout)

    def _next(self):
        """Wait for (webhook, first pending update); None once stopping."""
        state = self.state
        with state.updates_changed:
            while not state.stopping.is_set():
                if state.webhook and state.pending_updates:
                    update = state.pending_updates[0]
                    if state.update_allowed(update, state.webhook["allowed_updates"]):
                        return dict(state.webhook), update
                    state.pending_updates.pop(0)
                    continue
                state.updates_changed.wait(0.5)
        return None

    def _run(self):
        state = self.state
        while True:
            job = self._next()
            if job is None:
                return
            hook, update = job
            error = self._post_with_retries(hook, update)
            with state.updates_changed:
                pending = state.pending_updates
                if pending and pending[0] is update:
                    pending.pop(0)
                if error is None:
                    state.stats["webhook_deliveries"] += 1
                else:
                    state.stats["webhook_failures"] += 1
                    if state.webhook and state.webhook["url"] == hook["url"]:
                        state.webhook_last_error = (int(time.time()), error)

    def _post_with_retries(self, hook, update):
        body = json.dumps(update, ensure_ascii=False).encode("utf-8")
        error = None
        attempts = max(1, self.state.config["webhook_max_attempts"])
        for attempt in range(attempts):
            if attempt:
                if self.state.stopping.wait(self.state.config["webhook_retry_delay_s"]):
                    return error
                with self.state.lock:
                    if not self.state.webhook or self.state.webhook["url"] != hook["url"]:
                        return error  # the webhook was deleted or replaced meanwhile
            error = self._post(hook, body)
            if error is None:
                return None
        return error

    def _post(self, hook, body):
        parts = urllib.parse.urlsplit(hook["url"])
        timeout = self.state.config["webhook_timeout_s"]
        if parts.scheme == "https":
            # Loopback only, usually a self-signed development certificate.
            context = ssl._create_unverified_context()
            connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        if hook["secret_token"]:
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if 200 <= response.status < 300:
                return None
            return f"Wrong response from the webhook: {response.status} {response.reason}"
        except OSError as exc:
            return f"Connection failed: {type(exc).__name__}: {exc}"
        finally:
            connection.close()

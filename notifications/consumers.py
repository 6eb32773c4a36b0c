"""The inbox's WebSocket (/ws/inbox/): a logged-in user's open page joins
that user's group and receives its pushes (notifications.inbox); nothing else.

The Origin header is checked against ALLOWED_HOSTS (cmms/asgi.py) and the
session cookie authenticates, so another site's page cannot open it with the
user's cookie, and a connection never hears another user's events.
"""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import inbox

UNAUTHENTICATED = 4401  # the WebSocket twin of HTTP 401: log in, then reconnect


class InboxConsumer(AsyncJsonWebsocketConsumer):
    group = None

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            # Accept first so the page sees the code and stops retrying (a
            # refusal before accept is only an HTTP 403 to the browser).
            await self.accept()
            await self.close(code=UNAUTHENTICATED)
            return
        self.group = inbox.group_for(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        # The page only listens; state changes are CSRF-protected POSTs.
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def inbox_new(self, event):
        await self.send_json({"type": "new", "message_id": event.get("message_id"),
                              "priority": event.get("priority"), "pushed_at": event.get("pushed_at")})

    async def inbox_read(self, event):
        await self.send_json({"type": "read", "ids": event.get("ids", []), "all": event.get("all", False),
                              "unread": event.get("unread")})

"""The ASGI entry point (uvicorn cmms.asgi:application): Django's HTTP views
and the inbox's WebSocket.

WebSockets: the Origin must be one of ALLOWED_HOSTS (a page on another site
cannot ride on the user's cookie), then the Django session authenticates.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cmms.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from notifications.consumers import InboxConsumer  # noqa: E402

http_app = django_asgi_app
if settings.DEBUG:
    # What runserver did for `make run`: the admin's and the inbox's static
    # files. In production a reverse proxy or CDN serves collectstatic's output.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/inbox/", InboxConsumer.as_asgi())]))
        ),
    }
)

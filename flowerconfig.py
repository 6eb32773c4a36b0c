"""Flower's settings: ``celery -A celery_app flower`` reads ./flowerconfig.py.

Every page and the API ask for the same credentials: ``FLOWER_BASIC_AUTH``
(``user:password``, comma-separated for several). Flower's API refuses
unauthenticated calls, but without credentials its HTML pages (task
arguments, worker names, queue lengths) are open to anyone who reaches the
port; so Flower refuses to listen beyond loopback without them.
"""

import os

address = os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
basic_auth = [a.strip() for a in os.environ.get("FLOWER_BASIC_AUTH", "").split(",") if a.strip()]
if not basic_auth and address not in ("127.0.0.1", "localhost", "::1"):
    raise SystemExit(
        f"Flower would listen on {address} without authentication: set FLOWER_BASIC_AUTH=user:password "
        "(or FLOWER_ADDRESS=127.0.0.1 behind an authenticating reverse proxy)."
    )

"""python -m sandbox: run the Telegram sandbox until SIGTERM or SIGINT."""

import argparse
import json
import logging
import os
import signal
import sys
import threading

from .telegram import TelegramSandbox


def _env(name, default):
    return os.environ.get(name, default)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Local Telegram Bot API sandbox.")
    parser.add_argument("--host", default=_env("SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(_env("SANDBOX_PORT", "8081")))
    parser.add_argument("--latency-ms", type=float, default=float(_env("SANDBOX_LATENCY_MS", "0")))
    parser.add_argument("--latency-jitter-ms", type=float, default=0.0)
    parser.add_argument("--no-limits", action="store_true", help="disable the flood limits")
    parser.add_argument("--bot-rate", type=float, default=30.0, help="messages/s per bot token")
    parser.add_argument("--bot-burst", type=int, default=10)
    parser.add_argument("--chat-rate", type=float, default=1.0, help="messages/s per private chat")
    parser.add_argument("--chat-burst", type=int, default=3)
    parser.add_argument("--group-per-min", type=float, default=20.0, help="messages/min per group")
    parser.add_argument("--group-burst", type=int, default=3)
    parser.add_argument("--fail-rate", type=float, default=0.0, help="fraction answered 502 without delivery")
    parser.add_argument("--timeout-rate", type=float, default=0.0, help="fraction delivered but answered late")
    parser.add_argument("--timeout-delay-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--strict-chats", action="store_true", help="only chats set 'ok' via /_sandbox/chats exist")
    parser.add_argument("--known-chats", metavar="FILE", default=None,
                        help="JSON list of chats ({chat_id, first_name, last_name, username}), or an object with such a "
                             "'chats' list, that exist; implies "
                             "--strict-chats, so any other chat id answers 'chat not found' as Telegram would")
    parser.add_argument("--revoked-token", action="append", default=[], help="answer 401 for this token")
    parser.add_argument("--bot-username", default="cmms_sandbox_bot")
    parser.add_argument("--callback-answer-timeout-s", type=float, default=15.0)
    parser.add_argument("--quiet", action="store_true", help="do not log each Bot API request")
    return parser.parse_args(argv)


def load_known_chats(path):
    """The chats of --known-chats, validated: a bad file stops the sandbox with the reason."""
    try:
        with open(path, encoding="utf-8") as fh:
            chats = json.load(fh)
    except (OSError, ValueError) as exc:
        sys.exit(f"sandbox: cannot read --known-chats {path}: {exc}")
    if isinstance(chats, dict):  # bootstrap_demo --summary-json: {"logins": [...], "chats": [...]}
        chats = chats.get("chats")
    if not isinstance(chats, list) or not all(isinstance(c, dict) and "chat_id" in c for c in chats):
        sys.exit(f"sandbox: --known-chats {path} must be a JSON list of objects with a chat_id")
    fields = ("chat_id", "first_name", "last_name", "username", "title", "type")
    return [{k: c[k] for k in fields if c.get(k) not in (None, "")} for c in chats]


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stdout,
    )
    sandbox = TelegramSandbox(
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        limits_enabled=not args.no_limits,
        bot_rate=args.bot_rate,
        bot_burst=args.bot_burst,
        chat_rate=args.chat_rate,
        chat_burst=args.chat_burst,
        group_per_min=args.group_per_min,
        group_burst=args.group_burst,
        fail_rate=args.fail_rate,
        timeout_rate=args.timeout_rate,
        timeout_delay_s=args.timeout_delay_s,
        seed=args.seed,
        strict_chats=args.strict_chats or bool(args.known_chats),
        revoked_tokens=args.revoked_token,
        bot_username=args.bot_username,
        callback_answer_timeout_s=args.callback_answer_timeout_s,
    )
    if args.known_chats:
        for chat in load_known_chats(args.known_chats):
            sandbox.set_chat(**chat)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sandbox.start()
    print(f"Telegram sandbox listening on {sandbox.url} (chat page: {sandbox.url}/)", flush=True)
    while not stop.wait(1.0):
        pass
    sandbox.stop()
    print("Telegram sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

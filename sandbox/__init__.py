"""Local stand-ins for the providers' APIs, for demos and tests (Telegram first)."""

from .telegram import TelegramSandbox

__all__ = ["TelegramSandbox"]

"""Secrets never leave Rhetor in a log line or an error body.

`redact` replaces the configured provider keys (ANTHROPIC_API_KEY, OPENAI_API_KEY, any
setting named *_API_KEY / *_TOKEN / *_SECRET*) and anything shaped like a Rhetor API key
(`rk_<id>_<secret>`) or a provider key (`sk-...`, `sk-ant-...`) with a marker. It is
applied to every RhetorError's message (so API, WebSocket and SSE error bodies are
clean, whatever an upstream echoed back) and, through a logging filter installed at
startup, to every record Rhetor's handlers write.
"""

import logging
import re
from typing import Any

from django.conf import settings

MARK = "[redacted]"
# A Rhetor key keeps its visible prefix (rk_<id>) so an operator can tell which one.
_RHETOR_KEY = re.compile(r"\b(rk_[0-9a-f]{8})_[A-Za-z0-9_-]{8,}")
_PROVIDER_KEY = re.compile(r"\bsk-(?:ant-)?[A-Za-z0-9_-]{12,}")
_SECRET_SETTING = re.compile(r"(_API_KEY|_TOKEN|SECRET)", re.IGNORECASE)


_secret_names: list[str] | None = None


def _configured_secrets() -> list[str]:
    """The values of the secret settings (names found once; values read each time, so
    they follow settings overrides)."""
    global _secret_names
    if _secret_names is None:
        _secret_names = [n for n in dir(settings) if n.isupper() and _SECRET_SETTING.search(n)]
    values = (getattr(settings, n, "") for n in _secret_names)
    found = {v for v in values if isinstance(v, str) and len(v) >= 8}
    return sorted(found, key=len, reverse=True)


def redact(text: str) -> str:
    if not text:
        return text
    for secret in _configured_secrets():
        if secret in text:
            text = text.replace(secret, MARK)
    text = _RHETOR_KEY.sub(rf"\1_{MARK}", text)
    return _PROVIDER_KEY.sub(MARK, text)


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """Renders the record's message, redacted, so no argument can carry a secret out."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logged as it is
            return True
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactingFilter()


def install_log_filter() -> None:
    """settings.LOGGING puts the filter on its handlers; this adds it to any other handler
    of the root logger and Rhetor's loggers present at startup."""
    loggers = [logging.getLogger()] + [
        logging.getLogger(name)
        for name in ("rhetor", "llm", "prompts", "budget", "contexts", "access", "django")
    ]
    for log in loggers:
        for handler in log.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(_FILTER)

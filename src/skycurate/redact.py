"""Secrets out of what skycurate records: manifests, lineage, rejection details, logs.

Credentials arrive inside strings (``https://user:TOKEN@host``, ``?access_token=...``, an
``Authorization`` header in an error message) and from there would be stored forever in a
published manifest or a dataset column. ``redact`` masks them with ``***`` and leaves any other
text byte-identical, so it is safe to apply to every string that is written out; it is
idempotent (redacting twice changes nothing).
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

# userinfo of a URL's authority, up to its last "@" (a raw "@" in a password is still caught); for
# s3 the secret may hold a raw "/" (AWS secret keys are base64), so it ends at the first "@"
_USERINFO = re.compile(r"(?P<s3>\b(?i:s3[an]?))://(?P<s3info>[^\s/?#\"'<>\\:@]*:[^\s?#\"'<>\\@]*)@"
                       r"|(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*)://(?P<info>[^\s/?#\"'<>\\]*)@")
# a lone token as userinfo (``https://TOKEN@github.com``) is a secret only for these schemes
# (``ssh://git@host`` names a user)
_LONE_TOKEN_SCHEMES = frozenset({"http", "https", "git", "git+http", "git+https", "s3", "s3a", "s3n"})

_SECRET_PARAM = (r"(?:[\w.-]*[_-])?(?:token|secret|password|passwd|api[_-]?key|apikey|access[_-]?key|signature|sig"
                 r"|credential)|key")
_SECRETS = re.compile(
    # 1: a sensitive query parameter's value
    rf"(?P<param>[?&;](?:{_SECRET_PARAM})=)(?P<value>[^&#;\s\"'<>)]+)"
    # 2: an Authorization scheme's credentials (with a digit, so prose like "Bearer tokens" stays)
    r"|(?P<auth>\b(?:Bearer|Basic)\s+)(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{8,}"
    # 3: GitHub tokens and sk- API keys, by their shape
    r"|\b(?P<gh>gh[pousr]_|github_pat_)[A-Za-z0-9_]{20,}"
    r"|\b(?P<sk>sk-)(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{16,}",
    re.IGNORECASE)


def _userinfo(m: re.Match) -> str:
    scheme, info = (m["scheme"], m["info"]) if m["scheme"] else (m["s3"], m["s3info"])
    user, colon, secret = info.partition(":")
    if colon:
        masked = f"{user}:{MASK}" if secret else info
    elif info and info != MASK and scheme.lower() in _LONE_TOKEN_SCHEMES:
        masked = MASK
    else:
        masked = info
    return f"{scheme}://{masked}@"


def _secret(m: re.Match) -> str:
    if m["param"]:
        return m["param"] + MASK if m["value"] != MASK else m[0]
    return (m["auth"] or m["gh"] or m["sk"]) + MASK


def redact(text: str) -> str:
    """``text`` with credentials in URLs, sensitive query values, Authorization credentials,
    GitHub tokens and ``sk-`` keys replaced by ``***``; anything else unchanged."""
    if not text or not isinstance(text, str):
        return text
    return _SECRETS.sub(_secret, _USERINFO.sub(_userinfo, text))


def redact_obj(value: Any) -> Any:
    """``value`` with every string in it redacted, through dicts (keys too), lists and tuples;
    for manifest payloads (configs, stats, pins). Other values come back as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_obj(k): redact_obj(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_obj(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_obj(v) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """Redacts a record's formatted message (and its traceback text) before any handler sees it.

    A record it changes gets the redacted text as ``msg`` and no ``args``; one without secrets
    is left alone. It never drops a record, and a message that fails to format is left to the
    handler to report.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - the handler reports a bad format string, not the filter
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if redact(text) != text:
                record.exc_text = redact(text)
        return True


_FILTER = RedactingFilter()
_installed = False


def install_log_redaction() -> None:
    """Redact every log record as it is created (any logger, whatever handlers Prefect or the
    user configured later); also set on the ``skycurate`` logger. Idempotent.

    A filter on the ``skycurate`` logger alone would miss ``skycurate.*`` records: Python applies
    a logger's filters only to records logged on that very logger, not to its children's.
    """
    global _installed
    logger = logging.getLogger("skycurate")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    if _installed:
        return
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        _FILTER.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True

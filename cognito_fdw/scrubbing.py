"""Scrubbing secrets from text: every form a secret can take in a message (quoted,
escaped, JSON, URL-encoded, broken over lines) becomes ``***``, as does anything shaped
like an access key id.

``fdw.py`` scrubs every message, HINT and DETAIL on the way out with the table's
configured secrets; a secret read at run time (a vault) is remembered here for the
backend's life, since no option holds it.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from collections.abc import Iterable

# Access keys have a recognisable shape; scrub any, not just the configured one, so a key
# echoed back by an endpoint (or pasted into the wrong option) never reaches a message.
_ACCESS_KEY_RE = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b")

# A line of a multi-line secret is scrubbed on its own only from this length.  A message may
# show one line of it (a header value cut at the line break), so lines count; but a short
# line ("-----", "key", "a") would blank the same letters wherever they occur in a message,
# making it unreadable, and so few characters give little of the secret away.
MIN_LINE = 8

# Escape sequences whose hex digits an encoder may write in either case (%2f or %2F, \u00e9
# or \u00E9).
_HEX_ESCAPE_RE = re.compile(r"(%|\\x)([0-9A-Fa-f]{2})|(\\u)([0-9A-Fa-f]{4})|(\\U)([0-9A-Fa-f]{8})")

# Between two characters of a secret a message may break the line (wrapped output), with
# the next line indented.
_LINE_BREAK = r"(?:\r?\n[ \t]*)?"


# Secrets the wrapper read at run time (from a secrets table), which no option holds.
_remembered: set[str] = set()


def remember_secret(value: str) -> None:
    """Scrub ``value`` from every message from now on, in this backend."""
    if value:
        _remembered.add(value)


def scrub(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """``text`` with every form of each secret (and of each remembered one) replaced by
    ``***``, and anything shaped like an access key id too; None stays None.

    The forms are those of :func:`encodings`, and the raw secret broken over lines.
    """
    if text is None:
        return None
    wanted = frozenset(s for s in (*secrets, *_remembered) if s)
    forms: set[str] = set()
    for secret in wanted:
        forms |= encodings(secret)
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    for secret in sorted(wanted, key=len, reverse=True):
        if len(secret) > 1:
            text = re.sub(_LINE_BREAK.join(map(re.escape, secret)), "***", text)
    return _ACCESS_KEY_RE.sub("***", text)


@functools.lru_cache(maxsize=256)
def encodings(secret: str) -> frozenset[str]:
    """Every form ``secret`` can take in a message: itself; Python's ``repr`` of it as str
    (either quote, ``ascii()``) and as UTF-8 or Latin-1 bytes; JSON (ASCII-only or not, ``/``
    escaped or not); URL-encoded (``quote``, ``quote`` with ``/`` safe, ``quote_plus``); an
    SQL literal's doubled quotes; hex escapes in upper and lower case; each of these encoded
    once more (a repr inside JSON, say); and the same for each line of a multi-line secret
    that has at least ``MIN_LINE`` characters.  Empty strings are left out.
    """
    parts = {secret} | {line for line in secret.splitlines() if len(line) >= MIN_LINE}
    once = {form for part in parts for form in _encoded(part)}
    twice = {form for first in once for form in _encoded(first)}
    return frozenset(form for form in once | twice if form)


def _encoded(text: str) -> set[str]:
    forms = {
        text,
        text.replace("'", "''"),
        *(_escaped(text, q, ascii_only) for q in "'\"" for ascii_only in (False, True)),
        json.dumps(text)[1:-1],
        json.dumps(text)[1:-1].replace("/", "\\/"),  # encoders that escape "/" (PHP, Jackson)
        json.dumps(text, ensure_ascii=False)[1:-1],
        urllib.parse.quote(text, safe=""),
        urllib.parse.quote(text),
        urllib.parse.quote_plus(text),
    }
    for charset in ("utf-8", "latin-1"):
        try:
            raw = text.encode(charset)
        except UnicodeEncodeError:
            continue
        forms |= {_bytes_escaped(raw, "'"), _bytes_escaped(raw, '"')}
    for form in list(forms):
        forms.add(_HEX_ESCAPE_RE.sub(lambda m: _hex_case(m, str.upper), form))
        forms.add(_HEX_ESCAPE_RE.sub(lambda m: _hex_case(m, str.lower), form))
    return forms


def _hex_case(match: re.Match, case) -> str:
    prefix, digits = (group for group in match.groups() if group is not None)
    return prefix + case(digits)


_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(text: str, quote: str, ascii_only: bool = False) -> str:
    """The inside of ``repr(text)`` (``ascii(text)`` with ``ascii_only``) quoted with
    ``quote``: Python writes ``\'`` in a single-quoted repr and nothing for ``"``."""
    out = []
    for char in text:
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif char == quote == "'":
            out.append("\\'")
        elif char.isprintable() and not (ascii_only and ord(char) > 0x7F):
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


def _bytes_escaped(raw: bytes, quote: str) -> str:
    """The inside of ``repr(raw)`` quoted with ``quote``."""
    out = []
    for byte in raw:
        char = chr(byte)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif char == quote == "'":
            out.append("\\'")
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)

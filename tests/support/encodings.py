"""How libraries put a value into a message: the encodings the scrubber must catch, shared by
the unit tests of scrubbing.py (in test_errors.py) and the real-server leak tests."""

import json
import re
import urllib.parse


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), text)


# How libraries put a value into a message, each as the text between its quotes.
ENCODERS = {
    "raw": lambda s: s,
    "repr": lambda s: repr(s)[1:-1],
    "repr with both quotes": lambda s: repr(s + "'\"")[1:-3],
    "ascii": lambda s: ascii(s)[1:-1],
    "repr of UTF-8 bytes": lambda s: repr(s.encode())[2:-1],
    "repr of bytes with both quotes": lambda s: repr(s.encode() + b"'\"")[2:-3],
    "JSON": lambda s: json.dumps(s)[1:-1],
    "JSON, not ASCII-only": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "JSON with / escaped": lambda s: json.dumps(s)[1:-1].replace("/", "\\/"),
    "URL": lambda s: urllib.parse.quote(s, safe=""),
    "URL path": urllib.parse.quote,
    "URL form": urllib.parse.quote_plus,
    "URL, lower-case hex": lambda s: _lower_hex(urllib.parse.quote(s, safe="")),
    "SQL literal": lambda s: s.replace("'", "''"),
    "repr inside JSON": lambda s: json.dumps(repr(s))[2:-2],
    "JSON inside repr": lambda s: repr(json.dumps(s))[2:-2],
    "bytes repr inside a repr": lambda s: repr(repr(s.encode()))[3:-2],
}

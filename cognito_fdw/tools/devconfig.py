"""What both dev stacks share (:mod:`cognito_fdw.tools.dev`'s local one and
:mod:`cognito_fdw.tools.devdocker`'s compose one): the ports they prefer and how a taken one
is replaced, the demo query psql opens with, and how ``dev up`` speaks.
"""

from __future__ import annotations

import os
import socket
import sys

from cognito_fdw.tools.devstack import free_port
from cognito_fdw.tools.preflight import DevError

DEMO_QUERY = "SELECT * FROM cognito.users LIMIT 5"
#: psql's arguments for it: without a pager, which would leave the user at "(END)".
PREVIEW = ["-P", "pager=off", "-c", DEMO_QUERY]

#: The ports both stacks prefer, so that one URL serves both; COGNITO_FDW_DB_PORT and
#: COGNITO_FDW_MOTO_PORT change them, and a free port replaces a taken one (choose_port).
DB_PORT = 54329
MOTO_PORT = 50009
DB_PORT_VARIABLE, MOTO_PORT_VARIABLE = "COGNITO_FDW_DB_PORT", "COGNITO_FDW_MOTO_PORT"


def say(text: str) -> None:
    print(f"cognito-fdw dev: {text}", file=sys.stderr, flush=True)


def choose_port(preferred: int, previous: int | None, name: str, use: str) -> int:
    """The port ``name`` gets: the one it had last time, else ``preferred``, else a free one;
    saying so, with ``use`` (what to do about it), when it is not ``preferred``: the README's
    URL names 54329."""
    if previous and previous != preferred and port_free(previous):
        say(f"{name} keeps port {previous} from its last run ({preferred} was taken then): {use}")
        return previous
    if port_free(preferred):
        return preferred
    chosen = free_port()
    say(f"port {preferred} is taken (another program listens there), so {name} listens on "
        f"{chosen}: {use}")  # fmt: skip
    return chosen


def preferred_port(variable: str, default: int) -> int:
    """The port ``variable`` asks for, else ``default``."""
    value = os.environ.get(variable, "")
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise DevError(f"{variable}={value!r} is not a port number (1 to 65535): unset or fix it")
    return int(value)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True

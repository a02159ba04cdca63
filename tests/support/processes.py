"""What a dev stack leaves behind on this machine: listening ports and running processes,
read from the kernel (a connect to 127.0.0.1, /proc), for the tests that start and stop one."""

from __future__ import annotations

import socket
from pathlib import Path


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def running(pid: int | None) -> bool:
    """Whether process ``pid`` exists and is not a zombie (None: no process)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, TypeError):
        return False
    return not any(line.startswith("State:\tZ") for line in status.splitlines())


def processes_mentioning(text: str) -> list[str]:
    """``"pid: command line"`` of every process whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found

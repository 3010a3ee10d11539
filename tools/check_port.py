"""`make run`'s check before uvicorn starts: is the port free?

    python tools/check_port.py 127.0.0.1 8000

Exit 0 when the port can be bound; otherwise say which port is taken and which free one to
pick instead (`make run PORT=8001`), and exit 1. Without it a second `make run` logs
"started" and then fails with "address already in use".
"""

from __future__ import annotations

import socket
import sys


def can_bind(host: str, port: int) -> OSError | None:
    """None when `port` can be bound on `host`, else the error. SO_REUSEADDR as uvicorn sets it:
    a port left in TIME_WAIT by a server that just stopped counts as free."""
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        return exc
    return None


def next_free(host: str, port: int, tries: int = 50) -> int | None:
    for candidate in range(port + 1, min(port + 1 + tries, 65536)):
        if can_bind(host, candidate) is None:
            return candidate
    return None


def main(argv: list[str]) -> int:
    host, port = argv[1], int(argv[2])
    error = can_bind(host, port)
    if error is None:
        return 0
    other = next_free(host, port)
    reason = error.strerror or str(error)
    print(f"Port {port} on {host} is taken ({reason}): another server is using it, perhaps an earlier `make run`.", file=sys.stderr)
    print(f"Stop that server, or pick another port: make run PORT={other or port + 1}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

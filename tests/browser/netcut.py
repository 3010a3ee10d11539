"""A loopback TCP proxy that can cut every open connection: network loss, on demand.

    with CuttableProxy(live.port) as proxy:
        page.goto(proxy.url + "/")
        ...
        proxy.cut()     # every open connection is dropped, both sides, mid-body

New connections are still accepted after a cut, so the page can retry.
Only 127.0.0.1 is used.
"""

from __future__ import annotations

import socket
import struct
import threading


class CuttableProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        self.cuts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "CuttableProxy":
        threading.Thread(target=self._accept, daemon=True, name="netcut-accept").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self._listener.close()
        self.cut()

    def cut(self) -> int:
        """Drop every open connection, both sides; returns how many sockets were cut.
        The pumps then close the sockets."""
        with self._lock:
            sockets = list(self._open)
            self._open.clear()
        for sock in sockets:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # shutdown() wakes the pump blocked in recv() on this socket (close()
                # alone would not, and the connection would stay up).
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.cuts += 1
        return len(sockets)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # Pass the close on; each socket is the source of exactly one pump,
            # so each is closed once, here.
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            with self._lock:
                self._open.discard(src)
            try:
                src.close()
            except OSError:
                pass

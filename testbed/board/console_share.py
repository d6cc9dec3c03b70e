"""Lending a board's console to other terminals while the testbed keeps reading it.

A serial port has one reader. QEMU's socket chardev serves one client at a time (a
second connection waits, and sees nothing, while the testbed's console is connected),
and two processes reading one pty take bytes from each other (the output arrives
garbled in both, and pyserial takes a read that comes back empty for a closed port).
So ``testbed board boot`` keeps the only connection to the board's port (its console
still writes the log, reads the ``@tb`` events and notices a kernel crash) and serves
the console again from that process:

- ``ConsoleShare(console, "socket")``: a TCP port on 127.0.0.1, ``socket://127.0.0.1:PORT``
  (``testbed board console``, ``nc``, ``telnet`` or any pyserial tool attach to it), any
  number of clients at once;
- ``ConsoleShare(console, "pty")``: a pty of its own, ``/dev/pts/N`` (``testbed board
  console``, ``screen``, ``picocom``), one terminal at a time, as a serial line.

Each attached terminal gets everything the board prints from then on; what it types
goes to the board. While at least one terminal is attached the tty's echo is on
(:meth:`~testbed.board.console.Console.echo_session`): typed text is echoed by the
board, as on a serial console, and it is turned off again when the last one leaves.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import socket
import threading
import tty
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from testbed.board.errors import BoardError

if TYPE_CHECKING:
    from testbed.board.console import Console

#: Chunks of board output waiting for one slow terminal; past this the oldest are dropped
#: (the board and the testbed's own reader never wait for a terminal).
CLIENT_BACKLOG = 4096

ShareKind = Literal["socket", "pty"]


class _Terminal:
    """One attached terminal: the board's output queued to it by its own writer thread."""

    def __init__(self, console: Console, write: Callable[[bytes], None], name: str) -> None:
        self.console = console
        self._write = write
        self._queue: queue.Queue[bytes | None] = queue.Queue(CLIENT_BACKLOG)
        self._thread = threading.Thread(target=self._pump, name=f"share-{name}", daemon=True)
        self.gone = threading.Event()

    def _show(self, data: bytes) -> None:  # the console's reader thread: never blocks
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(data)

    def _pump(self) -> None:
        while (data := self._queue.get()) is not None:
            try:
                self._write(data)
            except OSError:
                self.gone.set()
                return

    def __enter__(self) -> _Terminal:
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self.console.echo_session())
        self.console.add_raw_listener(self._show)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.console.remove_raw_listener(self._show)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout=2)
        self._stack.close()


class ConsoleShare:
    """Serves ``console`` to other terminals at :attr:`address` until close()."""

    def __init__(self, console: Console, kind: ShareKind = "socket") -> None:
        if kind not in ("socket", "pty"):
            raise ValueError("a console share is a 'socket' (TCP on 127.0.0.1) or a 'pty'")
        self.console = console
        self.kind = kind
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: socket.socket | None = None
        self._master: int | None = None
        if kind == "socket":
            self._server = socket.socket()
            self._server.bind(("127.0.0.1", 0))
            self._server.listen(4)
            self._server.settimeout(0.2)
            self.address = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
            self._spawn(self._accept_loop, "accept")
        else:
            self._master, slave = os.openpty()
            tty.setraw(slave)  # a serial line: the board echoes, the pty does not
            self.address = os.ttyname(slave)
            os.close(slave)  # the master sees a hang-up until a terminal opens the slave
            os.set_blocking(self._master, False)
            self._spawn(self._pty_loop, "pty")

    def _spawn(self, target: Callable[..., None], what: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=f"share-{what}-{self.console.name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    # -- TCP ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._closing.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(self._socket_client, "client", conn)

    def _socket_client(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        try:
            with _Terminal(self.console, conn.sendall, self.console.name) as terminal:
                while not (self._closing.is_set() or terminal.gone.is_set()) and self.console.isalive():
                    try:
                        data = conn.recv(4096)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    self.console.send(data)
        except (OSError, BoardError):
            pass  # the terminal left, or the board is gone: the share itself goes on
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    # -- pty -----------------------------------------------------------------------------

    def _write_master(self, data: bytes) -> None:
        assert self._master is not None
        view = memoryview(data)
        while view and not self._closing.is_set():
            try:
                view = view[os.write(self._master, view):]
            except BlockingIOError:
                select.select([], [self._master], [], 0.2)

    def _attached(self) -> bool:
        """Whether a terminal holds the pty open (no hang-up on the master), waiting up to 0.2 s."""
        assert self._master is not None
        poller = select.poll()
        poller.register(self._master, select.POLLIN)
        events = poller.poll(200)
        if any(e & select.POLLHUP for _, e in events):
            self._closing.wait(0.2)  # a hang-up is reported at once: look again in a moment
            return False
        return True

    def _pty_loop(self) -> None:
        assert self._master is not None
        while not self._closing.is_set() and self.console.isalive():
            if not self._attached():
                continue
            try:
                with _Terminal(self.console, self._write_master, self.console.name) as terminal:
                    while not self._closing.is_set() and self.console.isalive() and not terminal.gone.is_set():
                        ready, _, _ = select.select([self._master], [], [], 0.2)
                        if not ready:
                            continue
                        try:
                            data = os.read(self._master, 4096)
                        except BlockingIOError:
                            continue
                        except OSError:  # EIO: the terminal closed the pty
                            break
                        if not data:
                            break
                        self.console.send(data)
            except BoardError:  # echo could not be turned on (a busy board): try again shortly
                self._closing.wait(1.0)

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        for thread in self._threads:
            thread.join(timeout=3)
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = None

    def __enter__(self) -> ConsoleShare:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

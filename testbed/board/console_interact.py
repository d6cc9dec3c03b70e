"""A console handed to the user's terminal (`testbed board boot`, `testbed board console`)."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import tty
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testbed.board.console import Console


def interact(console: Console, escape: bytes = b"\x1d", manage_echo: bool = True) -> None:
    """Until the user types the escape byte (Ctrl-]): their keys go to the board, its output to them.

    With ``manage_echo`` the board's echo is turned back on for the session
    (and off again after), for a console that prepare() set up.
    """
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    if manage_echo:
        console.run("stty echo", timeout=10)
    console.discard()

    def show(data: bytes) -> None:
        os.write(stdout, data)

    console.add_raw_listener(show)
    interactive = os.isatty(stdin)
    saved = termios.tcgetattr(stdin) if interactive else None
    try:
        if interactive:
            tty.setraw(stdin)
        console.send(b"\n")
        while not console.reader.eof:
            ready, _, _ = select.select([stdin], [], [], 0.2)
            if not ready:
                continue
            data = os.read(stdin, 1024)
            if not data:
                break
            if escape in data:
                data = data.split(escape, 1)[0]
                if data:
                    console.send(data)
                break
            console.send(data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        console.remove_raw_listener(show)
    if manage_echo and not console.reader.eof:
        with contextlib.suppress(Exception):
            console.run("stty -echo", timeout=10)

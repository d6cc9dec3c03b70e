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


#: Why an interactive session ended.
LEFT, PORT_CLOSED, INPUT_CLOSED = "left", "port closed", "input closed"


def interact(console: Console, escape: bytes = b"\x1d", manage_echo: bool = True) -> str:
    """Until the user types the escape byte (Ctrl-]): their keys go to the board, its output to them.

    With ``manage_echo`` the board's echo is turned back on for the session
    (and off again after), for a console that prepare() set up. Returns why it ended:
    LEFT (the escape byte), PORT_CLOSED (the board or the port went away) or INPUT_CLOSED.
    """
    with console.echo_session() if manage_echo else contextlib.nullcontext():
        return _interact(console, escape)


def _interact(console: Console, escape: bytes) -> str:
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    console.discard()

    def show(data: bytes) -> None:
        os.write(stdout, data)

    console.add_raw_listener(show)
    interactive = os.isatty(stdin)
    saved = termios.tcgetattr(stdin) if interactive else None
    why = PORT_CLOSED
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
                why = INPUT_CLOSED
                break
            if escape in data:
                data = data.split(escape, 1)[0]
                if data:
                    console.send(data)
                why = LEFT
                break
            console.send(data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        console.remove_raw_listener(show)
    return why

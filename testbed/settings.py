"""Every ``TESTBED_*`` environment variable, read in one place, and the defaults commands share.

A module that needs one imports its name from here (for click's ``envvar=``) or calls
:func:`get`; nothing else in testbed reads ``os.environ`` for a ``TESTBED_*`` name.
docs/settings.md's table is generated from :data:`SETTINGS`' help texts (:func:`write_docs`;
tests/unit/test_settings_docs.py fails when it is stale).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Where `testbed scenario run`, `testbed demo` and `testbed load run` write their reports when not
#: told (relative to the current directory); each command prints the path at the end.
REPORTS_DIR = Path("reports")


@dataclass(frozen=True)
class Setting:
    name: str
    help: str
    default: str | None = None


CACHE = "TESTBED_CACHE"
BOARD_IMAGE = "TESTBED_BOARD_IMAGE"
BOARD_BOOT_TIMEOUT = "TESTBED_BOARD_BOOT_TIMEOUT"
BOARDS_FILE = "TESTBED_BOARDS_FILE"
REPORT_DIR = "TESTBED_REPORT_DIR"
SYMBOLS = "TESTBED_SYMBOLS"
SERVICE_URL = "TESTBED_SERVICE_URL"
SERVICE_DATA = "TESTBED_SERVICE_DATA"
TOKEN = "TESTBED_TOKEN"
TENANT = "TESTBED_TENANT"
CONTROL_TOKEN = "TESTBED_CONTROL_TOKEN"
DEVICE_SECRET = "TESTBED_DEVICE_SECRET"

SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(CACHE, "where built images, snapshots and downloads are kept", "~/.cache/testbed"),
        Setting(BOARD_IMAGE, "a built image directory for the pytest `board` fixtures (default: build or reuse the current one)"),
        Setting(BOARD_BOOT_TIMEOUT, "seconds a cold boot may take before the board counts as not booting", "90"),
        Setting(BOARDS_FILE, "an inventory file of real boards for the pytest plugin and `scenario run`"),
        Setting(REPORT_DIR, "the pytest plugin's `--testbed-out`: each test's board console logs and scenario reports go to a folder of their own under it (default: the test's tmp_path)"),
        Setting(SYMBOLS, "extra directories of unstripped programs for crash analysis, separated by ':'"),
        Setting(SERVICE_URL, "the service root URL for the admin CLIs, e.g. http://127.0.0.1:8443"),
        Setting(SERVICE_DATA, "the data directory of `testbed service run`"),
        Setting(TOKEN, "a bearer token for the admin CLIs"),
        Setting(TENANT, "the tenant id or name for the admin CLIs"),
        Setting(CONTROL_TOKEN, "the control API token of a running service"),
        Setting(DEVICE_SECRET, "a claimed device's secret for `testbed board boot|run --provision URL --device-id ID` and `testbed service device-sync`"),
    )
}


def get(name: str) -> str | None:
    """The variable's value, the setting's default when unset or empty, else None."""
    if name not in SETTINGS:
        raise KeyError(f"{name} is not a testbed setting (see testbed.settings.SETTINGS)")
    value = os.environ.get(name)
    return value if value else SETTINGS[name].default


def get_float(name: str) -> float | None:
    value = get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None


DOCS_BEGIN = "<!-- settings begin (generated from testbed/settings.py; do not edit) -->"
DOCS_END = "<!-- settings end -->"


def markdown_table() -> str:
    """The settings as a Markdown table: variable, what it does, default."""
    rows = ["| variable | what | default |", "|---|---|---|"]
    for s in SETTINGS.values():
        what = s.help.replace("|", "\\|")  # a `|` inside a cell would end it
        rows.append(f"| `{s.name}` | {what} | {f'`{s.default}`' if s.default else '-'} |")
    return "\n".join(rows) + "\n"


def render_docs(text: str) -> str:
    """``text`` (a docs page) with the table between its markers regenerated."""
    head, rest = text.split(DOCS_BEGIN, 1)
    _, tail = rest.split(DOCS_END, 1)
    return f"{head}{DOCS_BEGIN}\n{markdown_table()}{DOCS_END}{tail}"


def write_docs(path: Path) -> bool:
    """Regenerate the table in ``path``; True when it changed."""
    old = path.read_text()
    new = render_docs(old)
    if new != old:
        path.write_text(new)
    return new != old


if __name__ == "__main__":  # python -m testbed.settings docs/settings.md
    import sys

    for arg in sys.argv[1:]:
        print(("updated: " if write_docs(Path(arg)) else "up to date: ") + arg)

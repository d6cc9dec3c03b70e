"""Every ``TESTBED_*`` environment variable, read in one place, and the defaults commands share.

A module that needs one imports its name from here (for click's ``envvar=``) or calls
:func:`get`; nothing else in testbed reads ``os.environ`` for a ``TESTBED_*`` name.
docs/settings.md is generated from :data:`SETTINGS`' help texts (``testbed doctor --settings``
prints them).
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
        Setting(DEVICE_SECRET, "a device's secret for `testbed service device-sync`-style commands"),
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

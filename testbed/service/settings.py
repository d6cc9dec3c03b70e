"""The service's settings, written once: name, type, default, help and command-line flag.

``ServiceConfig`` is built from :data:`SETTINGS`; so are the options of
``testbed service run`` (``testbed.service.cli``), ``ServiceProcess``'s keyword
to flag map (``testbed.service.process``) and ``GET /testbed/v1/config``. The
defaults a device must agree with (opt-in validity, upload and inflated caps,
throttle limit, retention) come from :mod:`testbed.contract.device_api`.
docs/service.md lists every setting with its default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.contract import device_api


@dataclass(frozen=True)
class Setting:
    name: str  #: the ServiceConfig field and the key in GET /testbed/v1/config
    type: type  #: int, float or bool
    default: Any
    help: str
    flag: str  #: the ``testbed service run`` option
    minimum: float | None = None

    @property
    def keyword(self) -> str:
        """The ServiceProcess keyword argument: the flag without dashes (``--rate-limit`` -> ``rate_limit``)."""
        return self.flag.lstrip("-").replace("-", "_")


SETTINGS: tuple[Setting, ...] = (
    Setting("throttle_limit", int, device_api.THROTTLE_LIMIT, "Dumps kept per crash signature and tenant.", "--throttle-limit", 1),
    Setting("max_upload_bytes", int, device_api.MAX_UPLOAD_BYTES, "Cap on a compressed upload (bytes).", "--max-upload-bytes", 1),
    Setting("max_inflated_bytes", int, device_api.MAX_INFLATED_BYTES, "Cap on an upload's inflated size (bytes).", "--max-inflated-bytes", 1),
    Setting("validity_seconds", int, device_api.VALIDITY_SECONDS, "How long a device's opt-in stays valid after a sync (told at sync).", "--validity-seconds", 1),
    Setting("retention_seconds", int, device_api.RETENTION_SECONDS, "Stored dumps are deleted this long after they were stored.", "--retention-seconds", 1),
    Setting("rate_limit_per_minute", int, 120, "Crash requests (intent + upload) per device per minute; 0 disables.", "--rate-limit", 0),
    Setting("rate_limit_burst", int, 30, "Burst allowance of the per-device rate limit.", "--rate-burst", 1),
    Setting("sweep_interval", float, 10.0, "Seconds between retention sweeps.", "--sweep-interval", 0.1),
    Setting("max_json_bytes", int, device_api.MAX_JSON_BODY, "Largest JSON request body (bytes; 413 past it).", "--max-json-bytes", 2),
    Setting("keep_alive_timeout", float, 5.0, "Seconds an idle keep-alive connection is kept open.", "--keep-alive-timeout", 0.05),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
BY_KEYWORD: dict[str, Setting] = {s.keyword: s for s in SETTINGS}


def _config_fields() -> list[tuple[str, Any, Any]]:
    fields: list[tuple[str, Any, Any]] = [
        ("data_dir", Path, dataclasses.field()),
        ("enable_control", bool, dataclasses.field(default=False)),
        ("control_token", "str | None", dataclasses.field(default=None)),
    ]
    fields += [(s.name, s.type, dataclasses.field(default=s.default)) for s in SETTINGS]
    return fields


if TYPE_CHECKING:

    @dataclass
    class ServiceConfig:
        data_dir: Path
        enable_control: bool = False
        control_token: str | None = None

        def __getattr__(self, name: str) -> Any: ...

        def __init__(self, data_dir: Path, **kwargs: Any) -> None: ...

else:
    ServiceConfig = dataclasses.make_dataclass("ServiceConfig", _config_fields())
    ServiceConfig.__module__ = __name__
    ServiceConfig.__doc__ = "The service's configuration: the data directory, control access, and every setting of SETTINGS."


def effective(config: ServiceConfig) -> dict[str, Any]:
    """Every setting with its value (``GET /testbed/v1/config``)."""
    return {s.name: getattr(config, s.name) for s in SETTINGS}

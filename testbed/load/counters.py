"""The names the simulated devices count under and the scenario checks read, written once.

The users (``testbed.load.users``, the locustfiles) add to these counters and
samples through ``testbed.load.runtime.CONTEXT.counters``; the scenario modules
(``testbed.load.scenarios``) read the merged sums and samples after the run.
Locust's own request names (statistics per request kind) are here too.
No Locust import: the host side imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

# ----------------------------------------------------------------------------- sums

SYNC_OK = "sync_ok"
SYNC_FAILED = "sync_failed"
CRASHES = "crashes"
STORED = "stored"  # 201s a device saw (per signature too: keyed(STORED, sig))
STORED_BYTES = "stored_bytes"
THROTTLED_AT_UPLOAD = "throttled_at_upload"
BYTES_SENT_THROTTLED = "bytes_sent_throttled"
RATELIMITED = "ratelimited"
UPLOAD_FAILED = "upload_failed"
UPLOAD_SENT = "upload_sent"  # keyed per signature: bodies sent
SKIPPED_OPTOUT = "skipped_optout"
SKIPPED_LOCAL = "skipped_local"  # the device knew the signature was throttled
SKIPPED_INTENT = "skipped_intent"  # the service said skip at intent
BYTES_SAVED = "bytes_saved"
# the deadline scenario (each keyed per phase too)
GAVE_UP = "gave_up"
ANSWERED = "answered"
ERRORS = "errors"
# the fleet scenario
FLEET_SYNCS = "fleet_syncs"
FLEET_SYNC_FAILED = "fleet_sync_failed"
FLEET_DEVICES_SYNCED = "fleet_devices_synced"

# keyed per worker index by the master: requests in that worker's reports
WORKER_REQUESTS = "worker_requests"

# ----------------------------------------------------------------------------- samples

HANDLED_S = "handled_s"  # seconds from a crash to its answer or give-up (keyed per phase too)
GAVE_UP_S = "gave_up_s"
LATE = "late"  # [wall time, seconds] of crashes handled past the deadline + LATE_SLACK_S
#: a crash handled later than its deadline by more than this counts as late
LATE_SLACK_S = 0.2
LOOP_LAG = "loop_lag"  # [wall time, seconds] the load generator's event loop woke up late
LATENESS_S = "lateness_s"  # how late a fleet sync started against its schedule

# ----------------------------------------------------------------------------- request names


class Request(StrEnum):
    """Locust request names (statistics are per name)."""

    SYNC = "sync"
    INTENT = "intent"
    FLEET_SYNC = "fleet sync"


#: ``upload <bucket>``: uploads are reported per size bucket.
UPLOAD_PREFIX = "upload "
#: ``crash <phase> ok|gave-up|error``: the deadline scenario's crashes, per phase.
CRASH_PREFIX = "crash "


class CrashOutcome(StrEnum):
    OK = "ok"
    GAVE_UP = "gave-up"
    ERROR = "error"


def upload_request(bucket: str) -> str:
    return f"{UPLOAD_PREFIX}{bucket}"


def crash_request(phase: str, outcome: CrashOutcome) -> str:
    return f"{CRASH_PREFIX}{phase} {outcome}"


# ----------------------------------------------------------------------------- keyed counters

SEP = ":"


def keyed(name: str, key: str) -> str:
    """``name:key``: a counter per signature or per phase."""
    return f"{name}{SEP}{key}"


def skipped_intent_reason(reason: str) -> str:
    """``skipped_intent_<reason>``: intent answers that were not 'upload', per reason."""
    return f"{SKIPPED_INTENT}_{reason}"


def per_key(sums: Mapping[str, float], name: str) -> dict[str, int]:
    """The ``name:key`` counters as ``{key: count}``."""
    prefix = name + SEP
    return {k[len(prefix):]: int(v) for k, v in sums.items() if k.startswith(prefix)}


def plain(sums: Mapping[str, float]) -> dict[str, float]:
    """The counters that are not keyed (for the summary)."""
    return {k: v for k, v in sums.items() if SEP not in k}


# ----------------------------------------------------------------------------- files in the output directory

#: the merged counters, written by the master (or the one local process) when Locust quits
COUNTERS_FILE = "tb_counters.json"
#: phase marks of the deadline scenario: one JSON line per phase start
PHASES_FILE = "phases.jsonl"


def acked_journal_name(worker_index: int, pid: int) -> str:
    """A process's journal of acknowledged uploads (one JSON line per 201)."""
    return f"acked-w{worker_index}-{pid}.jsonl"


ACKED_JOURNAL_GLOB = "acked-*.jsonl"

"""The writer's decisions for one batch, against the database as it is: repeats of stored
upload ids, consent, and the throttle count (exactly N per signature, the batch's own
earlier acceptances counted)."""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.service.store import Store
from testbed.service.uploads import Kind, Outcome, Upload, region_for


@dataclass
class Decision:
    #: uploads to store (region and group filled in)
    accepted: list[Upload] = field(default_factory=list)
    #: stored dumps per (tenant, signature) before this batch
    stored_before: dict[tuple[str, str], int] = field(default_factory=dict)
    #: (upload, the earlier upload of the same batch with the same device and upload id)
    repeats: list[tuple[Upload, Upload]] = field(default_factory=list)


def decide(store: Store, valid: list[Upload], outcomes: dict[str, Outcome], throttle_limit: int) -> Decision:
    """Fill ``outcomes`` for the uploads not to store; return the rest and what the commit needs."""
    decision = Decision()
    known = store.uploads({(u.device_id, u.upload_id) for u in valid if u.upload_id})
    first_of: dict[tuple[str, str], Upload] = {}
    fresh: list[Upload] = []
    for u in valid:
        if u.upload_id:
            key = (u.device_id, u.upload_id)
            if key in known:  # stored before: the first answer again
                dump_id, region = known[key]
                outcomes[u.dump_id] = Outcome(Kind.STORED, dump_id, region, repeat=True)
                continue
            if key in first_of:  # the same id twice in this batch: the first one's answer
                decision.repeats.append((u, first_of[key]))
                continue
            first_of[key] = u
        fresh.append(u)
    consent = store.consent({u.device_id for u in fresh})
    counts = store.signature_counts({(u.tenant_id, u.signature) for u in fresh})
    decision.stored_before = dict(counts)
    for u in fresh:
        row = consent.get(u.device_id)
        if row is None or not row["allow_crash_dumps"] or row["tenant_id"] != u.tenant_id:
            outcomes[u.dump_id] = Outcome(Kind.OPTOUT)
            continue
        key = (u.tenant_id, u.signature)
        if counts[key] >= throttle_limit:
            outcomes[u.dump_id] = Outcome(Kind.THROTTLED)
            continue
        counts[key] += 1
        u.group_id = row["group_id"]
        u.region = region_for(row["boundary"], u.device_id)
        decision.accepted.append(u)
    return decision


def answer_repeats(decision: Decision, outcomes: dict[str, Outcome]) -> None:
    """After the commit: a repeat within the batch gets its first upload's answer."""
    for u, first in decision.repeats:
        first_outcome = outcomes[first.dump_id]
        outcomes[u.dump_id] = Outcome(
            first_outcome.kind, first_outcome.dump_id, first_outcome.region, first_outcome.detail,
            first_outcome.error, repeat=first_outcome.kind == Kind.STORED,
        )  # fmt: skip

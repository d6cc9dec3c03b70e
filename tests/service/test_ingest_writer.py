"""The ingest writer's in-memory throttle set and its body check (real SQLite and files, no service process)."""

from __future__ import annotations

import asyncio
import gzip
import secrets
import time
import uuid
from pathlib import Path

import pytest
from service_helpers import SEEDED_DEVICE, seed_data_dir, write_dumps

from testbed.service.clock import Clock
from testbed.service.ingest import Ingest, Outcome, Upload
from testbed.service.store import Store

DEVICE = SEEDED_DEVICE


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return seed_data_dir(tmp_path)


def _insert_rows(data_dir: Path, signature: str, n: int) -> str:
    if n:
        segment = len(list((data_dir / "blobs" / "EU").glob("*.seg"))) + 1
        write_dumps(data_dir, [(uuid.uuid4().hex, b"x") for _ in range(n)], segment=segment, signature=signature,
                    created_at=int(time.time()) - 10)  # fmt: skip
    store = Store(data_dir / "service.db")
    tenant = store.get_meta("tenant")
    store.close()
    return tenant or ""


def _upload(tenant: str, signature: str, body: bytes = b"blob") -> Upload:
    return Upload(tenant_id=tenant, device_id=DEVICE, signature=signature, body=body, inflated_size=len(body),
                  component_class="App", component_name="crashapp", crash_time=None)


async def _submit_all(ingest: Ingest, uploads: list[Upload]) -> list[Outcome]:
    return list(await asyncio.gather(*(ingest.submit(u) for u in uploads)))


def test_throttle_set_loaded_at_start_updated_by_commits_and_sweeps(data_dir: Path) -> None:
    full, partial = secrets.token_hex(16), secrets.token_hex(16)
    tenant = _insert_rows(data_dir, full, 3)
    _insert_rows(data_dir, partial, 1)
    ingest = Ingest(data_dir, Clock(), throttle_limit=3, retention=5)
    ingest.start()
    try:
        assert ingest.is_throttled(tenant, full)
        assert not ingest.is_throttled(tenant, partial)
        # 4 concurrent uploads of the partial signature: exactly 2 stored, then it is throttled
        outcomes = asyncio.run(_submit_all(ingest, [_upload(tenant, partial) for _ in range(4)]))
        assert sorted(o.kind for o in outcomes) == ["stored", "stored", "throttled", "throttled"]
        assert ingest.is_throttled(tenant, partial)
        assert not ingest.is_throttled(tenant, secrets.token_hex(16))
        # the sweep removes the 10 s old rows (retention 5 s): the full signature is free again
        assert ingest.request_sweep(wait=True) == 4
        assert not ingest.is_throttled(tenant, full)
        assert not ingest.is_throttled(tenant, partial)  # 2 rows left, limit 3
    finally:
        ingest.stop()


def test_writer_checks_bodies_when_given_a_cap(data_dir: Path, core_gz: bytes) -> None:
    tenant = _insert_rows(data_dir, secrets.token_hex(16), 0)
    ingest = Ingest(data_dir, Clock(), throttle_limit=5, max_inflated=4 << 20)
    ingest.start()
    try:
        good, bad, bomb = (_upload(tenant, secrets.token_hex(16), body)
                           for body in (core_gz, b"not gzip at all",
                                        gzip.compress(gzip.decompress(core_gz) + bytes(8 << 20))))
        outcomes = asyncio.run(_submit_all(ingest, [good, bad, bomb]))
        assert outcomes[0].kind == "stored"
        assert good.inflated_size == len(gzip.decompress(core_gz))
        assert outcomes[1].kind == "invalid" and outcomes[1].error is not None
        assert (outcomes[1].error.status, outcomes[1].error.code) == (400, "BadGzip")
        assert outcomes[2].kind == "invalid" and outcomes[2].error is not None and outcomes[2].error.status == 413
    finally:
        ingest.stop()
    store = Store(data_dir / "service.db")
    try:
        assert [r["id"] for r in store.conn.execute("SELECT id FROM dumps")] == [outcomes[0].dump_id]
    finally:
        store.close()

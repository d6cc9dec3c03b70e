"""The store's own unit tests (real SQLite in a temporary directory)."""

from __future__ import annotations

import time
from pathlib import Path

from testbed.service.store import Store, hash_secret


def test_tokens_are_stored_hashed_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "service.db")
    try:
        tenant = store.create_tenant("t", int(time.time()))
        token = store.create_token(tenant["Id"], "Reader", int(time.time()), "cli")
        stored = store.token_hashes()
        assert token not in stored  # only its hash is kept
        assert hash_secret(token) in stored
        assert store.token(hash_secret(token))["role"] == "Reader"
    finally:
        store.close()

"""Metadata in SQLite (WAL): tenants, tokens, products, device groups, devices, dumps, audit.

One ``Store`` per connection. The service's event loop uses one store for the
public, device and support APIs; the ingest writer thread uses its own (it is
the only writer of dump rows, which is what makes throttling race-free).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from testbed.service.store_dumps import DumpRows

ROLES = ("Administrator", "Contributor", "Reader", "Support")
TENANT_ROLES = ("Administrator", "Contributor", "Reader")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, tenant_id TEXT REFERENCES tenants(id), role TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), name TEXT NOT NULL,
    description TEXT, created_at INTEGER NOT NULL, UNIQUE (tenant_id, name)
);
CREATE TABLE IF NOT EXISTS device_groups (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE, tenant_id TEXT NOT NULL REFERENCES tenants(id),
    product_id TEXT NOT NULL REFERENCES products(id), name TEXT NOT NULL, description TEXT,
    os_feed_type INTEGER NOT NULL DEFAULT 0, update_policy INTEGER NOT NULL DEFAULT 0,
    allow_crash_dumps INTEGER NOT NULL DEFAULT 0, boundary TEXT NOT NULL DEFAULT 'None',
    created_at INTEGER NOT NULL, UNIQUE (product_id, name)
);
CREATE INDEX IF NOT EXISTS device_groups_tenant ON device_groups (tenant_id, seq);
-- Device group names are unique within a product whatever their case (names are ASCII).
CREATE UNIQUE INDEX IF NOT EXISTS device_groups_name_nocase ON device_groups (product_id, name COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), type INTEGER NOT NULL,
    resource_location TEXT NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
    group_id TEXT NOT NULL REFERENCES device_groups(id), secret_hash TEXT NOT NULL,
    claimed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS devices_group ON devices (group_id);
CREATE TABLE IF NOT EXISTS dumps (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, device_id TEXT NOT NULL,
    group_id TEXT NOT NULL, signature TEXT NOT NULL, region TEXT NOT NULL,
    segment TEXT NOT NULL, seg_offset INTEGER NOT NULL, size INTEGER NOT NULL, inflated_size INTEGER NOT NULL,
    component_class TEXT NOT NULL, component_name TEXT NOT NULL, crash_time INTEGER,
    created_at INTEGER NOT NULL, upload_id TEXT, sha256 TEXT
);
CREATE INDEX IF NOT EXISTS dumps_signature ON dumps (tenant_id, signature);
CREATE INDEX IF NOT EXISTS dumps_created ON dumps (created_at);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, dump_id TEXT, reason TEXT NOT NULL
);
"""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> str:
    return "tbt_" + secrets.token_urlsafe(32)


def new_id() -> str:
    return str(uuid.uuid4())


def connect(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class Store(DumpRows):
    """Typed access to the metadata database: every SQL statement on its tables is here
    (the dump rows' in :class:`testbed.service.store_dumps.DumpRows`)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.conn = connect(db_path)
        self.conn.executescript(SCHEMA)
        self.migrate_dumps()

    def close(self) -> None:
        self.conn.close()

    def disable_autocheckpoint(self) -> None:
        """WAL checkpoints are run by the ingest flusher (``checkpoint``), off the writer's path."""
        self.conn.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # transactions (the ingest writer's) -------------------------------------
    def begin(self) -> None:
        """Take the write lock now (``BEGIN IMMEDIATE``)."""
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    # meta -----------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # tenants and tokens ---------------------------------------------------
    def create_tenant(self, name: str, now: int) -> dict[str, Any]:
        tenant_id = new_id()
        self.conn.execute(
            "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)", (tenant_id, name, now)
        )
        return {"Id": tenant_id, "Name": name}

    def find_tenant(self, id_or_name: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM tenants WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
            (id_or_name, id_or_name, id_or_name),
        ).fetchone()

    def tenants(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT id, name FROM tenants ORDER BY created_at, rowid").fetchall()

    def tenant(self, tenant_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM tenants WHERE id = ?", (tenant_id,)).fetchone()

    def create_token(self, tenant_id: str | None, role: str, now: int, label: str = "") -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if role == "Support" and tenant_id is not None:
            raise ValueError("a Support token belongs to no tenant")
        if role != "Support" and tenant_id is None:
            raise ValueError(f"a {role} token needs a tenant")
        token = new_token()
        self.conn.execute(
            "INSERT INTO tokens (hash, tenant_id, role, label, created_at) VALUES (?, ?, ?, ?, ?)",
            (hash_secret(token), tenant_id, role, label, now),
        )
        return token

    def token(self, token_hash: str) -> sqlite3.Row | None:
        """The token row (tenant_id, role, label) of a token's hash."""
        return self.conn.execute("SELECT * FROM tokens WHERE hash = ?", (token_hash,)).fetchone()

    def token_hashes(self) -> list[str]:
        return [r["hash"] for r in self.conn.execute("SELECT hash FROM tokens")]

    # products ---------------------------------------------------------------
    def create_product(self, tenant_id: str, name: str, description: str | None, now: int):
        pid = new_id()
        self.conn.execute(
            "INSERT INTO products (id, tenant_id, name, description, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (pid, tenant_id, name, description, now),
        )
        return self.product(tenant_id, pid)

    def product(self, tenant_id: str, product_id: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM products WHERE id = ? AND tenant_id = ?", (product_id, tenant_id)
        ).fetchone()

    def product_named(self, tenant_id: str, name: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM products WHERE tenant_id = ? AND name = ? COLLATE NOCASE "
            "ORDER BY created_at, rowid LIMIT 1",
            (tenant_id, name),
        ).fetchone()

    def group_named(self, tenant_id: str, product_id: str, name: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM device_groups WHERE tenant_id = ? AND product_id = ? AND name = ? COLLATE NOCASE",
            (tenant_id, product_id, name),
        ).fetchone()

    def devices_in_group(self, tenant_id: str, group_id: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM devices WHERE tenant_id = ? AND group_id = ? ORDER BY claimed_at, rowid",
            (tenant_id, group_id),
        ).fetchall()

    # operations (the Public API's asynchronous operations; the mock's finish at once) -----
    def create_operation(self, tenant_id: str, op_type: int, resource_location: str, now: int) -> sqlite3.Row:
        op_id = new_id()
        self.conn.execute(
            "INSERT INTO operations (id, tenant_id, type, resource_location, created_at) VALUES (?, ?, ?, ?, ?)",
            (op_id, tenant_id, op_type, resource_location, now),
        )
        row = self.operation(tenant_id, op_id)
        assert row is not None  # inserted just above
        return row

    def operation(self, tenant_id: str, op_id: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM operations WHERE id = ? AND tenant_id = ?", (op_id, tenant_id)
        ).fetchone()

    def products(self, tenant_id: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM products WHERE tenant_id = ? ORDER BY created_at, rowid", (tenant_id,)
        ).fetchall()

    # device groups ------------------------------------------------------------
    def create_group(self, tenant_id: str, product_id: str, fields: dict[str, Any], now: int):
        gid = new_id()
        self.conn.execute(
            "INSERT INTO device_groups (id, tenant_id, product_id, name, description, "
            "os_feed_type, update_policy, allow_crash_dumps, boundary, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                gid,
                tenant_id,
                product_id,
                fields["Name"],
                fields.get("Description"),
                fields.get("OsFeedType", 0),
                fields.get("UpdatePolicy", 0),
                int(bool(fields.get("AllowCrashDumpsCollection", False))),
                fields.get("RegionalDataBoundary", "None"),
                now,
            ),
        )
        return self.group(tenant_id, gid)

    def group(self, tenant_id: str, group_id: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM device_groups WHERE id = ? AND tenant_id = ?", (group_id, tenant_id)
        ).fetchone()

    def groups_page(
        self, tenant_id: str, after_seq: int, limit: int, product_id: str | None = None
    ) -> list[sqlite3.Row]:
        if product_id is None:
            return self.conn.execute(
                "SELECT * FROM device_groups WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (tenant_id, after_seq, limit),
            ).fetchall()
        return self.conn.execute(
            "SELECT * FROM device_groups WHERE tenant_id = ? AND product_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (tenant_id, product_id, after_seq, limit),
        ).fetchall()

    def update_group(self, group_id: str, columns: dict[str, Any]) -> None:
        if not columns:
            return
        assignments = ", ".join(f"{col} = ?" for col in columns)
        self.conn.execute(
            f"UPDATE device_groups SET {assignments} WHERE id = ?", (*columns.values(), group_id)
        )

    # devices ------------------------------------------------------------------
    def device(self, device_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM devices WHERE id = ?", (device_id,)).fetchone()

    def device_with_group(self, device_id: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT d.id AS device_id, d.tenant_id, d.group_id, d.secret_hash, "
            "g.allow_crash_dumps, g.boundary FROM devices d "
            "JOIN device_groups g ON g.id = d.group_id WHERE d.id = ?",
            (device_id,),
        ).fetchone()

    def claim_device(self, device_id: str, tenant_id: str, group_id: str, now: int) -> str:
        secret = secrets.token_urlsafe(32)
        self.conn.execute(
            "INSERT INTO devices (id, tenant_id, group_id, secret_hash, claimed_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (device_id, tenant_id, group_id, hash_secret(secret), now),
        )
        return secret

    def move_device(self, device_id: str, group_id: str) -> None:
        self.conn.execute("UPDATE devices SET group_id = ? WHERE id = ?", (group_id, device_id))

    # audit --------------------------------------------------------------------
    def add_audit(self, at: int, actor: str, action: str, dump_id: str | None, reason: str) -> int:
        cur = self.conn.execute(
            "INSERT INTO audit (at, actor, action, dump_id, reason) VALUES (?, ?, ?, ?, ?)",
            (at, actor, action, dump_id, reason),
        )
        return int(cur.lastrowid or 0)

    def audit_rows(self, limit: int, after_id: int = 0) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        ).fetchall()

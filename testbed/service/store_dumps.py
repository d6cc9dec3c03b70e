"""The SQL of the ``dumps`` table: the ingest writer's decisions and commits, recovery,
retention, and the readers (sync, support, control). Mixed into ``Store``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

#: Columns of a new dump row, in the order of :meth:`DumpRows.insert_dumps`'s tuples.
INSERT_COLUMNS = (
    "id", "tenant_id", "device_id", "group_id", "signature", "region", "segment", "seg_offset", "size",
    "inflated_size", "component_class", "component_name", "crash_time", "created_at",
    "upload_id", "sha256",
)  # fmt: skip
#: Columns added after the first schema: added to an older database when it is opened.
ADDED_COLUMNS = {"upload_id": "TEXT", "sha256": "TEXT"}
FILTER_COLUMNS = {
    "tenantId": "tenant_id",
    "deviceId": "device_id",
    "deviceGroupId": "group_id",
    "signature": "signature",
    "region": "region",
}
#: SQLite's default limit of bound parameters is 999: chunk IN lists below it.
CHUNK = 400


class DumpRows:
    conn: sqlite3.Connection

    def migrate_dumps(self) -> None:
        have = {row["name"] for row in self.conn.execute("PRAGMA table_info(dumps)")}
        for column, kind in ADDED_COLUMNS.items():
            if column not in have:
                self.conn.execute(f"ALTER TABLE dumps ADD COLUMN {column} {kind}")
        # exactly-once: an upload id is stored at most once per device
        self.conn.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS dumps_upload ON dumps (device_id, upload_id) WHERE upload_id IS NOT NULL"
        )

    # readers ------------------------------------------------------------------
    def throttled_signatures(self, tenant_id: str, limit: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT signature FROM dumps WHERE tenant_id = ? GROUP BY signature "
            "HAVING COUNT(*) >= ? ORDER BY signature",
            (tenant_id, limit),
        ).fetchall()
        return [r["signature"] for r in rows]

    def throttled_pairs(self, limit: int) -> frozenset[tuple[str, str]]:
        """Every (tenant, signature) with at least ``limit`` stored dumps."""
        rows = self.conn.execute(
            "SELECT tenant_id, signature FROM dumps GROUP BY tenant_id, signature HAVING COUNT(*) >= ?",
            (limit,),
        ).fetchall()
        return frozenset((r["tenant_id"], r["signature"]) for r in rows)

    def signature_count(self, tenant_id: str, signature: str) -> int:
        row = self.conn.execute(
            "SELECT COUNT(*) AS n FROM dumps WHERE tenant_id = ? AND signature = ?",
            (tenant_id, signature),
        ).fetchone()
        return int(row["n"])

    def dump(self, dump_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM dumps WHERE id = ?", (dump_id,)).fetchone()

    def dumps(self, filters: dict[str, Any], limit: int | None) -> list[sqlite3.Row]:
        """Dumps matching the given filters (API names, see FILTER_COLUMNS; ``since``), oldest first."""
        where = []
        params: list[Any] = []
        for key, column in FILTER_COLUMNS.items():
            if filters.get(key) is not None:
                where.append(f"{column} = ?")
                params.append(filters[key])
        if filters.get("since") is not None:
            where.append("created_at >= ?")
            params.append(filters["since"])
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self.conn.execute(
            f"SELECT * FROM dumps {clause} ORDER BY created_at, id LIMIT ?", (*params, -1 if limit is None else limit)
        ).fetchall()

    # the ingest writer ----------------------------------------------------------
    def consent(self, device_ids: Iterable[str]) -> dict[str, sqlite3.Row]:
        """Group, tenant, consent and boundary of each device (one query per chunk)."""
        ids = list(device_ids)
        out: dict[str, sqlite3.Row] = {}
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            rows = self.conn.execute(
                "SELECT d.id, d.group_id, d.tenant_id, g.allow_crash_dumps, g.boundary FROM devices d "
                "JOIN device_groups g ON g.id = d.group_id "
                f"WHERE d.id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            out.update({row["id"]: row for row in rows})
        return out

    def signature_counts(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Stored dumps per (tenant, signature), in one query per chunk of keys."""
        ordered = list(keys)
        out = dict.fromkeys(ordered, 0)
        for i in range(0, len(ordered), CHUNK):
            chunk = ordered[i : i + CHUNK]
            where = " OR ".join(["(tenant_id = ? AND signature = ?)"] * len(chunk))
            params = [v for key in chunk for v in key]
            for row in self.conn.execute(
                f"SELECT tenant_id, signature, COUNT(*) AS n FROM dumps WHERE {where} GROUP BY tenant_id, signature",
                params,
            ):
                out[(row["tenant_id"], row["signature"])] = row["n"]
        return out

    def uploads(self, keys: Iterable[tuple[str, str | None]]) -> dict[tuple[str, str], tuple[str, str]]:
        """(device, upload id) -> (dump id, region) of those already stored."""
        ordered = [k for k in keys if k[1] is not None]
        out: dict[tuple[str, str], tuple[str, str]] = {}
        for i in range(0, len(ordered), CHUNK):
            chunk = ordered[i : i + CHUNK]
            where = " OR ".join(["(device_id = ? AND upload_id = ?)"] * len(chunk))
            params = [v for key in chunk for v in key]
            for row in self.conn.execute(f"SELECT device_id, upload_id, id, region FROM dumps WHERE {where}", params):
                out[(row["device_id"], row["upload_id"])] = (row["id"], row["region"])
        return out

    def insert_dumps(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert dump rows (tuples in INSERT_COLUMNS order), inside the caller's transaction."""
        self.conn.executemany(
            f"INSERT INTO dumps ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join('?' * len(INSERT_COLUMNS))})",
            rows,
        )

    def delete_dumps(self, dump_ids: Iterable[str]) -> None:
        """Delete rows, inside the caller's transaction."""
        self.conn.executemany("DELETE FROM dumps WHERE id = ?", [(i,) for i in dump_ids])

    # recovery, retention and the storage figures -----------------------------------
    def segment_rows(self) -> list[sqlite3.Row]:
        """(id, segment, seg_offset, size) of every dump: where its record is."""
        return self.conn.execute("SELECT id, segment, seg_offset, size FROM dumps").fetchall()

    def segment_refs(self) -> dict[str, dict[int, str]]:
        """segment -> {offset: dump id} of every dump."""
        out: dict[str, dict[int, str]] = {}
        for row in self.conn.execute("SELECT id, segment, seg_offset FROM dumps"):
            out.setdefault(row["segment"], {})[row["seg_offset"]] = row["id"]
        return out

    def referenced_segments(self) -> set[str]:
        """The segments at least one dump's record is in."""
        return {row["segment"] for row in self.conn.execute("SELECT DISTINCT segment FROM dumps")}

    def expired(self, cutoff: int) -> list[str]:
        """The ids of every dump stored at or before ``cutoff``."""
        return [row["id"] for row in self.conn.execute("SELECT id FROM dumps WHERE created_at <= ?", (cutoff,))]

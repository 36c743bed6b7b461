"""The state store: what a BMC must remember across a restart, even a SIGKILL.

One SQLite database per emulator (`DIR/state.sqlite3`), rows keyed by (node, kind, key),
each value JSON, in WAL mode. A save returns once its commit is written to the WAL, so a change
a client was told succeeded survives a SIGKILL or crash of the process: the kernel has it.
`sync="full"` (synchronous=FULL) also waits for the disk at every commit, for a host's power
cut too, at the cost of an fsync (ms) on the saving thread; "normal" (the default) leaves the
fsync to checkpoints. Features call it through `NodeState` (one node's view): `save`,
`delete`, `load`, `replace`; a node without a store keeps its state in memory only, as before.

A database that cannot be read is never reset: `open_store` raises StateError naming the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

FILENAME = "state.sqlite3"
SCHEMA_VERSION = 1
#: how far a save goes before it returns (`defaults.state_sync`): the kernel, or the disk
Sync = Literal["normal", "full"]
SYNC_MODES: dict[str, str] = {"normal": "NORMAL", "full": "FULL"}


class StateError(Exception):
    """The state database cannot be opened or read (corrupt, not SQLite, wrong version)."""


class StateStore:
    """One emulator's state database. Thread-safe: one connection behind a lock (writes are
    small and rare; the front ends' threads all save through it)."""

    def __init__(self, path: Path, sync: Sync = "normal") -> None:
        self.path = path
        self.sync = sync
        self._lock = threading.Lock()
        self._db = self._open(path)

    def _open(self, path: Path) -> sqlite3.Connection:
        # created 0600 before SQLite opens it: its WAL and shm files take the same mode
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateError(f"state file {path}: cannot open: {exc}") from exc
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StateError(f"state file {path}: cannot use WAL mode (got {mode})")
            # NORMAL in WAL mode: a commit is in the kernel when save returns (a killed
            # process loses nothing); FULL: on the disk too (a power cut loses nothing)
            db.execute(f"PRAGMA synchronous={SYNC_MODES[self.sync]}")
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise StateError(f"state file {path}: corrupt: {'; '.join(problems[:3])}")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            db.execute("CREATE TABLE IF NOT EXISTS state (node TEXT NOT NULL, kind TEXT NOT NULL,"
                       " key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (node, kind, key))")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
            if version != str(SCHEMA_VERSION):
                raise StateError(f"state file {path}: schema version {version}, this emulator "
                                 f"reads {SCHEMA_VERSION}")
        except sqlite3.Error as exc:  # "file is not a database", "malformed", ...
            db.close()
            raise StateError(f"state file {path}: corrupt or not a state database: {exc}"
                             ) from exc
        except StateError:
            db.close()
            raise
        return db

    def node(self, name: str) -> NodeState:
        return NodeState(self, name)

    def forget(self, node: str) -> int:
        """Delete every row of `node` (`nodes remove --forget`); how many there were."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                count = self._db.execute("DELETE FROM state WHERE node = ?", (node,)).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StateError(f"state file {self.path}: cannot delete: {exc}") from exc
        return count

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- used through NodeState ---------------------------------------------------------------
    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run `statements` as one transaction: all of them are on disk, or none."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, args in statements:
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StateError(f"state file {self.path}: cannot save: {exc}") from exc

    def _read(self, node: str, kind: str) -> dict[str, Any]:
        with self._lock:
            try:
                rows = self._db.execute("SELECT key, value FROM state WHERE node = ? AND kind = ?",
                                        (node, kind)).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"state file {self.path}: cannot read: {exc}") from exc
        values = {}
        for key, text in rows:
            try:
                values[key] = json.loads(text)
            except ValueError as exc:
                raise StateError(f"state file {self.path}: node '{node}' {kind} {key}: "
                                 f"corrupt value: {exc}") from exc
        return values


    def _kinds(self, node: str) -> set[str]:
        with self._lock:
            try:
                rows = self._db.execute("SELECT DISTINCT kind FROM state WHERE node = ?",
                                        (node,)).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"state file {self.path}: cannot read: {exc}") from exc
        return {kind for (kind,) in rows}


class NodeState:
    """One node's rows of the store: what features call (`node.state`)."""

    def __init__(self, store: StateStore, node: str) -> None:
        self.store = store
        self.node = node

    def save(self, kind: str, key: str, value: Any) -> None:
        """Remember `value` (JSON-able) under (kind, key); on disk when this returns."""
        self.store._write([("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)",
                            (self.node, kind, key, json.dumps(value)))])

    def delete(self, kind: str, key: str) -> None:
        self.store._write([("DELETE FROM state WHERE node = ? AND kind = ? AND key = ?",
                            (self.node, kind, key))])

    def apply(self, kind: str, saves: Mapping[str, Any],
              deletes: Iterable[str] = ()) -> None:
        """Save `saves` and delete the keys `deletes` of `kind` in one transaction."""
        self.store._write([*(("DELETE FROM state WHERE node = ? AND kind = ? AND key = ?",
                              (self.node, kind, key)) for key in deletes),
                           *(("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)",
                              (self.node, kind, key, json.dumps(value)))
                             for key, value in saves.items())])

    def replace(self, kind: str, values: Mapping[str, Any]) -> None:
        """Make `values` the whole of `kind` in one transaction (e.g. a cleared log)."""
        self.store._write([("DELETE FROM state WHERE node = ? AND kind = ?", (self.node, kind)),
                           *(("INSERT INTO state VALUES (?, ?, ?, ?)",
                              (self.node, kind, key, json.dumps(value)))
                             for key, value in values.items())])

    def load(self, kind: str) -> dict[str, Any]:
        """Every saved (key, value) of `kind`; {} if none was ever saved."""
        return self.store._read(self.node, kind)

    def get(self, kind: str, key: str) -> Any | None:
        return self.load(kind).get(key)

    def kinds(self) -> set[str]:
        """The kinds this node has rows of (one query: what must be read at start)."""
        return self.store._kinds(self.node)

    def error(self, kind: str, key: str, detail: str) -> StateError:
        """The error for a saved row that does not make sense: file, node, kind and key."""
        return StateError(f"state file {self.store.path}: node '{self.node}' {kind} {key}: "
                          f"unreadable saved value: {detail}")


def open_store(directory: str | Path, sync: Sync = "normal") -> StateStore:
    """The store in `directory` (made 0700 if missing); StateError names what is wrong."""
    directory = Path(directory).expanduser()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"state directory {directory}: {exc.strerror or exc}") from exc
    if not directory.is_dir():
        raise StateError(f"state directory {directory}: not a directory")
    path = directory / FILENAME
    try:
        return StateStore(path, sync)
    except OSError as exc:
        raise StateError(f"state file {path}: {exc.strerror or exc}") from exc

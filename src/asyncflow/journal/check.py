"""``asyncflow journal check``: is a journal file whole, and does every row decode?

Opens the file read-only (nothing is created, migrated or recovered), runs
SQLite's ``PRAGMA integrity_check``, then reads every row of every table
through the decoders the journal itself reads them with
(:mod:`asyncflow.journal.decode`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiosqlite
import anyio

from ..errors import JournalError
from .decode import (
    MOVE_ASIDE,
    Undecodable,
    integer,
    json_texts,
    member,
    optional_real,
    optional_text,
    real,
    text,
)
from .history import _ATTEMPT_COLUMNS, attempt_record, run_record
from .records import LeaseOutcome
from .schema import SCHEMA_VERSION, check_identity, identity, sniff

__all__ = ["JournalCheck", "check_journal"]

_SHOWN: Final = 20
"""Problems listed at most; the rest are counted."""

_BATCH: Final = 1000


@dataclass(frozen=True, slots=True)
class JournalCheck:
    """What :func:`check_journal` found."""

    path: Path
    version: int
    """Its schema version."""
    counts: dict[str, int]
    """Rows read per table."""
    problems: list[str]
    """What is wrong: at most :data:`_SHOWN` of it."""
    more: int = 0
    """Problems found beyond those listed."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        """One line when the journal is whole; else every problem listed, and the way out."""
        rows = ", ".join(f"{count} {table}" for table, count in self.counts.items())
        if self.ok:
            return f"{self.path}: OK (schema version {self.version}; {rows})"
        lines = [f"{self.path}: damaged journal ({rows or 'no rows'} read):"]
        lines += [f"  {problem}" for problem in self.problems]
        if self.more:
            lines.append(f"  ... and {self.more} more")
        lines.append(MOVE_ASIDE[0].upper() + MOVE_ASIDE[1:] + ".")
        return "\n".join(lines)


async def check_journal(path: Path) -> JournalCheck:
    """Check the journal at ``path`` without changing it.

    Raises:
        JournalError: there is no file, it is not SQLite, or not an asyncflow
            journal, or comes from a newer asyncflow, or cannot be opened.
    """
    where = anyio.Path(path)
    if not await where.exists():
        raise JournalError(f"{path}: no such journal file")
    await sniff(path)
    uri = f"{(await where.resolve()).as_uri()}?mode=ro"  # read-only: creates nothing
    try:
        db = await aiosqlite.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise JournalError(f"{path}: cannot open the journal: {exc}") from exc
    try:
        return await _check(db, path)
    except sqlite3.OperationalError as exc:
        raise JournalError(f"{path}: cannot read the journal: {exc}") from exc
    finally:
        await db.close()


async def _check(db: aiosqlite.Connection, path: Path) -> JournalCheck:
    try:
        app_id, version, objects = await identity(db)
    except sqlite3.DatabaseError as exc:  # not even the schema reads
        return JournalCheck(path, 0, {}, [f"the schema cannot be read: {exc}"])
    if objects == 0:
        raise JournalError(f"{path}: is an empty database, not a journal (yet)")
    check_identity(path, app_id, version, objects)
    problems: list[str] = []
    try:
        rows = await db.execute_fetchall("PRAGMA integrity_check")
        problems += [f"integrity_check: {row[0]}" for row in rows if row[0] != "ok"]
    except sqlite3.DatabaseError as exc:
        problems.append(f"integrity_check: {exc}")
    counts: dict[str, int] = {}
    if version == SCHEMA_VERSION:  # an older file is migrated when opened: not before
        for table, sql, decode in _TABLES:
            try:
                counts[table] = await _decode_all(db, table, sql, decode, problems)
            except sqlite3.DatabaseError as exc:
                problems.append(f"{table}: cannot be read: {exc}")
    shown = problems[:_SHOWN]
    return JournalCheck(path, version, counts, shown, len(problems) - len(shown))


async def _decode_all(
    db: aiosqlite.Connection,
    table: str,
    sql: str,
    decode: Callable[[Sequence[Any]], None],
    problems: list[str],
) -> int:
    """Decode every row ``sql`` reads (a batch at a time); returns how many."""
    count = 0
    async with db.execute(sql) as cursor:
        while batch := list(await cursor.fetchmany(_BATCH)):
            count += len(batch)
            for row in batch:
                try:
                    decode(row)
                except Undecodable as exc:
                    problems.append(f"{table} row {row[0]!r}: {exc}")
    return count


def _run(row: Sequence[Any]) -> None:
    run_record(row[:8], {}, ())
    real(row[8], "expires")
    optional_text(row[9], "node")


def _attempt(row: Sequence[Any]) -> None:
    integer(row[0], "id")
    attempt_record(row[1:])


def _lease(row: Sequence[Any]) -> None:
    task_id, run_id, host, pid, since, expires, ttl, outcome, released, prev, prev_at = row
    text(task_id, "task_id")
    text(run_id, "run_id")
    text(host, "host")
    integer(pid, "pid")
    for value, column in ((since, "since"), (expires, "expires"), (ttl, "ttl")):
        real(value, column)
    for value, column in ((released, "released"), (prev_at, "prev_at")):
        optional_real(value, column)
    for value, column in ((outcome, "outcome"), (prev, "prev_outcome")):
        if value is not None:
            member(LeaseOutcome, value, column)


def _claim(row: Sequence[Any]) -> None:
    integer(row[0], "id")
    text(row[1], "run_id")
    real(row[2], "since")
    real(row[3], "ttl")
    json_texts(row[4], "task_ids")


def _run_key(row: Sequence[Any]) -> None:
    integer(row[0], "key")
    text(row[1], "run_id")


_TABLES: Final[tuple[tuple[str, str, Callable[[Sequence[Any]], None]], ...]] = (
    (
        "runs",
        "SELECT r.run_id, r.status, r.started, r.ended, r.host, r.pid, r.version, q.requested, "
        "r.expires, r.node FROM runs AS r LEFT JOIN run_requests AS q USING (run_id)",
        _run,
    ),
    (
        "attempts",
        f"SELECT a.id, {_ATTEMPT_COLUMNS} FROM attempts AS a LEFT JOIN runs AS r USING (run_id)",
        _attempt,
    ),
    (
        "leases",
        "SELECT task_id, run_id, host, pid, since, expires, ttl, outcome, released, "
        "prev_outcome, prev_at FROM leases",
        _lease,
    ),
    ("run_claims", "SELECT id, run_id, since, ttl, task_ids FROM run_claims", _claim),
    ("run_keys", "SELECT key, run_id FROM run_keys", _run_key),
)

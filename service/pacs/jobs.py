"""The job table (SQLite): one row per received instance, from intake to delivery.

A row is committed (``synchronous=FULL``) before the sender hears "stored", and every state change
is one transaction, so a crash at any point leaves each acknowledged instance in a state a restart
resumes from:

    queued -> triaging -> triaged -> done        (delivered, or no destination configured)
                  |                   ^
                  +-> queued (retry)  +-- delivery retried with back-off while it fails
                  +-> dead            (the contract refused the film, or attempts ran out)

The SOP Instance UID is the key: an instance sent twice (a modality that never heard our answer)
is one job. Rows hold UIDs, results and our own error messages; never names, IDs or dates.
"""

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

QUEUED = "queued"
TRIAGING = "triaging"
TRIAGED = "triaged"
DONE = "done"
DEAD = "dead"
JobState = Literal["queued", "triaging", "triaged", "done", "dead"]
DeliveryState = Literal["pending", "retrying", "delivered", "none"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    sop_instance_uid    TEXT PRIMARY KEY,
    study_instance_uid  TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    sop_class_uid       TEXT NOT NULL,
    source              TEXT NOT NULL,
    spool_name          TEXT,
    received_at         REAL NOT NULL,
    state               TEXT NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    reason              TEXT,
    predicted_class     TEXT,
    probability         REAL,
    triage_level        TEXT,
    model_name          TEXT,
    model_version       TEXT,
    finished_at         REAL,
    sr_instance_uid     TEXT,
    sc_instance_uid     TEXT,
    sr_name             TEXT,
    sc_name             TEXT,
    delivery_state      TEXT,
    pending_destinations TEXT NOT NULL DEFAULT '',
    delivery_attempts   INTEGER NOT NULL DEFAULT 0,
    next_delivery_at    REAL,
    delivery_error      TEXT,
    delivered_at        REAL,
    purged_at           REAL,
    ood_score           REAL,
    ood_threshold       REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, received_at);
CREATE INDEX IF NOT EXISTS jobs_delivery ON jobs (state, next_delivery_at);
CREATE INDEX IF NOT EXISTS jobs_study ON jobs (study_instance_uid);
"""
# Columns added after the first release, with their SQL type: a job table written by an older
# version gains them at open (SQLite's ADD COLUMN; old rows read NULL, i.e. "not recorded").
_ADDED_COLUMNS = {"ood_score": "REAL", "ood_threshold": "REAL"}


# SQLite's largest INTEGER: the most an OFFSET can be (a larger one raises OverflowError).
MAX_OFFSET = 2**63 - 1


@dataclass(frozen=True)
class NewJob:
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    source: str  # "dimse" or "stow"
    spool_name: str


@dataclass(frozen=True)
class Job:
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    source: str
    spool_name: str | None
    received_at: float
    state: str
    attempts: int
    reason: str | None
    predicted_class: str | None
    probability: float | None
    triage_level: str | None
    model_name: str | None
    model_version: str | None
    finished_at: float | None
    sr_instance_uid: str | None
    sc_instance_uid: str | None
    sr_name: str | None
    sc_name: str | None
    delivery_state: str | None
    pending_destinations: str
    delivery_attempts: int
    next_delivery_at: float | None
    delivery_error: str | None
    delivered_at: float | None
    purged_at: float | None
    ood_score: float | None  # the film's out-of-distribution score (it passed: <= ood_threshold)
    ood_threshold: float | None  # the detector's threshold then; both None for a model without one

    @property
    def destinations(self) -> list[str]:
        return [name for name in self.pending_destinations.split(",") if name]


_COLUMNS = ", ".join(field.name for field in fields(Job))


@dataclass(frozen=True)
class TriageResult:
    predicted_class: str
    probability: float
    triage_level: str | None
    model_name: str
    model_version: str
    sr_instance_uid: str
    sc_instance_uid: str
    sr_name: str
    sc_name: str
    ood_score: float | None = None
    ood_threshold: float | None = None


@dataclass(frozen=True)
class QueueStats:
    waiting: int  # queued + triaging
    oldest_received_at: float | None
    dead: int
    undelivered: int  # triaged, a destination still pending


@dataclass(frozen=True)
class StudyFilter:
    triage_level: str | None = None
    delivery_state: str | None = None
    study_instance_uid: str | None = None
    received_after: float | None = None


class JobTable:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        path.chmod(0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut, not just a crash
        self._db.executescript(_SCHEMA)
        present = {str(row[1]) for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, sql_type in _ADDED_COLUMNS.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {sql_type}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Job]:
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [Job(*row) for row in rows]

    # --- intake ------------------------------------------------------------------------------------
    def record(self, job: NewJob, now: float | None = None) -> bool:
        """Queue ``job``; False (and nothing changed) when its SOP Instance UID is already known."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO jobs (sop_instance_uid, study_instance_uid, series_instance_uid, "
                "sop_class_uid, source, spool_name, received_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.sop_instance_uid,
                    job.study_instance_uid,
                    job.series_instance_uid,
                    job.sop_class_uid,
                    job.source,
                    job.spool_name,
                    time.time() if now is None else now,
                    QUEUED,
                ),
            )
            return cursor.rowcount == 1

    def spool_names(self) -> set[str]:
        """Every spool file a job still refers to (the others are leftovers of unacknowledged writes)."""
        with self._lock:
            rows = self._db.execute("SELECT spool_name, sr_name, sc_name FROM jobs").fetchall()
        return {name for row in rows for name in row if name}

    # --- triage -------------------------------------------------------------------------------------
    def recover(self, max_attempts: int) -> int:
        """After a restart: films caught mid-triage go back to the queue (or dead, out of attempts)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, reason = ? WHERE state = ? AND attempts >= ?",
                (
                    DEAD,
                    "triage_interrupted: the service stopped while triaging it, too often",
                    TRIAGING,
                    max_attempts,
                ),
            )
            return db.execute("UPDATE jobs SET state = ? WHERE state = ?", (QUEUED, TRIAGING)).rowcount

    def claim(self) -> Job | None:
        """The oldest queued job, now ``triaging`` with one more attempt counted; None when idle."""
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = ? ORDER BY received_at LIMIT 1", (QUEUED,)
            ).fetchone()
            if row is None:
                return None
            job = Job(*row)
            db.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + 1 WHERE sop_instance_uid = ?",
                (TRIAGING, job.sop_instance_uid),
            )
        return job

    def triaged(self, uid: str, result: TriageResult, destinations: Sequence[str], now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, reason = NULL, predicted_class = ?, probability = ?, "
                "triage_level = ?, model_name = ?, model_version = ?, finished_at = ?, "
                "sr_instance_uid = ?, sc_instance_uid = ?, sr_name = ?, sc_name = ?, delivery_state = ?, "
                "pending_destinations = ?, next_delivery_at = ?, ood_score = ?, ood_threshold = ? "
                "WHERE sop_instance_uid = ?",
                (
                    TRIAGED if destinations else DONE,
                    result.predicted_class,
                    result.probability,
                    result.triage_level,
                    result.model_name,
                    result.model_version,
                    now,
                    result.sr_instance_uid,
                    result.sc_instance_uid,
                    result.sr_name,
                    result.sc_name,
                    "pending" if destinations else "none",
                    ",".join(destinations),
                    now,
                    result.ood_score,
                    result.ood_threshold,
                    uid,
                ),
            )

    def failed(self, uid: str, reason: str, *, final: bool, now: float) -> str:
        """An attempt failed: dead-letter at once when ``final`` or out of attempts, else requeue."""
        with self._transaction() as db:
            state = DEAD if final else QUEUED
            db.execute(
                "UPDATE jobs SET state = ?, reason = ?, finished_at = ?, delivery_state = ? "
                "WHERE sop_instance_uid = ?",
                (state, reason, now if final else None, "none" if final else None, uid),
            )
        return state

    # --- delivery -----------------------------------------------------------------------------------
    def due_deliveries(self, now: float, limit: int) -> list[Job]:
        return self._rows(
            f"SELECT {_COLUMNS} FROM jobs WHERE state = ? AND next_delivery_at <= ? "
            "ORDER BY next_delivery_at LIMIT ?",
            (TRIAGED, now, limit),
        )

    def next_delivery_at(self) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_delivery_at) FROM jobs WHERE state = ?", (TRIAGED,)
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def delivered(self, uid: str, destination: str, now: float) -> None:
        """``destination`` has the results; the job is done once no destination is left."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT pending_destinations FROM jobs WHERE sop_instance_uid = ?", (uid,)
            ).fetchone()
            left = [name for name in str(row[0]).split(",") if name and name != destination]
            if left:
                db.execute(
                    "UPDATE jobs SET pending_destinations = ? WHERE sop_instance_uid = ?",
                    (",".join(left), uid),
                )
            else:
                db.execute(
                    "UPDATE jobs SET pending_destinations = '', state = ?, delivery_state = 'delivered', "
                    "delivered_at = ?, delivery_error = NULL WHERE sop_instance_uid = ?",
                    (DONE, now, uid),
                )

    def delivery_failed(self, uid: str, error: str, next_at: float) -> int:
        """Count a failed round; returns the attempts so far (the caller's back-off grows with it)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET delivery_attempts = delivery_attempts + 1, delivery_state = 'retrying', "
                "delivery_error = ?, next_delivery_at = ? WHERE sop_instance_uid = ?",
                (error, next_at, uid),
            )
            row = db.execute(
                "SELECT delivery_attempts FROM jobs WHERE sop_instance_uid = ?", (uid,)
            ).fetchone()
        return int(row[0])

    # --- retention ----------------------------------------------------------------------------------
    def purgeable(self, before: float, limit: int = 500) -> list[Job]:
        """Finished jobs (done or dead) whose files are still spooled and older than ``before``."""
        return self._rows(
            f"SELECT {_COLUMNS} FROM jobs WHERE state IN (?, ?) AND purged_at IS NULL "
            "AND COALESCE(delivered_at, finished_at, received_at) <= ? LIMIT ?",
            (DONE, DEAD, before, limit),
        )

    def purged(self, uid: str, now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET spool_name = NULL, sr_name = NULL, sc_name = NULL, purged_at = ? "
                "WHERE sop_instance_uid = ?",
                (now, uid),
            )

    # --- reading ------------------------------------------------------------------------------------
    def get(self, uid: str) -> Job | None:
        rows = self._rows(f"SELECT {_COLUMNS} FROM jobs WHERE sop_instance_uid = ?", (uid,))
        return rows[0] if rows else None

    def all_jobs(self) -> list[Job]:
        return self._rows(f"SELECT {_COLUMNS} FROM jobs ORDER BY received_at")

    def stats(self) -> QueueStats:
        with self._lock:
            waiting, oldest = self._db.execute(
                "SELECT COUNT(*), MIN(received_at) FROM jobs WHERE state IN (?, ?)", (QUEUED, TRIAGING)
            ).fetchone()
            (dead,) = self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (DEAD,)).fetchone()
            (undelivered,) = self._db.execute(
                "SELECT COUNT(*) FROM jobs WHERE state = ?", (TRIAGED,)
            ).fetchone()
        return QueueStats(
            int(waiting), None if oldest is None else float(oldest), int(dead), int(undelivered)
        )

    def study_uids(self, where: StudyFilter, limit: int, offset: int) -> tuple[list[str], int]:
        """Study UIDs matching ``where`` (urgent, then untriaged, then routine; newest first within each)
        and how many match in all."""
        clauses: list[str] = ["1 = 1"]
        params: list[Any] = []
        if where.study_instance_uid is not None:
            clauses.append("study_instance_uid = ?")
            params.append(where.study_instance_uid)
        if where.received_after is not None:
            clauses.append("received_at >= ?")
            params.append(where.received_after)
        having: list[str] = ["1 = 1"]
        if where.triage_level == "urgent":
            having.append("MAX(triage_level = 'urgent') = 1")
        elif where.triage_level == "routine":  # triaged, and no film of it urgent
            having.append("MAX(triage_level = 'urgent') = 0")
        if where.delivery_state is not None:
            having.append(f"{_STUDY_DELIVERY} = ?")
            params.append(where.delivery_state)
        sql = (
            f"SELECT study_instance_uid, {_STUDY_RANK} AS rank, MAX(received_at) AS newest "
            f"FROM jobs WHERE {' AND '.join(clauses)} GROUP BY study_instance_uid "
            f"HAVING {' AND '.join(having)}"
        )
        with self._lock:
            (total,) = self._db.execute(f"SELECT COUNT(*) FROM ({sql})", params).fetchone()
            rows = self._db.execute(
                f"{sql} ORDER BY rank DESC, newest DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return [str(row[0]) for row in rows], int(total)

    def jobs_of_studies(self, study_uids: Sequence[str]) -> list[Job]:
        if not study_uids:
            return []
        marks = ", ".join("?" for _ in study_uids)
        return self._rows(
            f"SELECT {_COLUMNS} FROM jobs WHERE study_instance_uid IN ({marks}) ORDER BY received_at",
            list(study_uids),
        )


# Worklist rank: any urgent film first; then studies with a film not triaged (queued, or dead: someone
# must look), which may yet be urgent; routine last.
_STUDY_RANK = (
    "CASE WHEN MAX(triage_level = 'urgent') = 1 THEN 2 WHEN MAX(triage_level IS NULL) = 1 THEN 1 ELSE 0 END"
)
# A study's delivery state: the least advanced of its instances'.
_STUDY_DELIVERY = (
    "CASE WHEN MAX(delivery_state = 'retrying') = 1 THEN 'retrying' "
    "WHEN MAX(delivery_state = 'pending' OR delivery_state IS NULL) = 1 THEN 'pending' "
    "WHEN MAX(delivery_state = 'delivered') = 1 THEN 'delivered' ELSE 'none' END"
)

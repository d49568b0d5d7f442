"""The job table's state machine, recovery, retention query and worklist order, on a real SQLite file."""

import sqlite3
from pathlib import Path

import pytest

from service.pacs.jobs import _SCHEMA, JobTable, NewJob, StudyFilter, TriageResult


@pytest.fixture
def jobs(tmp_path: Path) -> JobTable:
    return JobTable(tmp_path / "jobs.sqlite3")


def _new(uid: str, study: str = "1.2.3", name: str = "in-x.dcm") -> NewJob:
    return NewJob(uid, study, f"{study}.1", "1.2.840.10008.5.1.4.1.1.1.1", "dimse", name)


def _result(level: str, probability: float) -> TriageResult:
    return TriageResult("PNEUMONIA", probability, level, "m", "1", "9.1", "9.2", "sr-a.dcm", "sc-a.dcm")


def test_one_job_per_sop_instance_uid_and_fifo_claims(jobs: JobTable) -> None:
    assert jobs.record(_new("1.1"), now=10.0)
    assert not jobs.record(_new("1.1", name="in-other.dcm"), now=11.0)  # a re-send is the same job
    assert jobs.record(_new("1.2"), now=12.0)
    first = jobs.claim()
    assert first is not None and first.sop_instance_uid == "1.1" and first.spool_name == "in-x.dcm"
    second = jobs.claim()
    assert second is not None and second.sop_instance_uid == "1.2"
    assert jobs.claim() is None
    stats = jobs.stats()
    assert stats.waiting == 2 and stats.oldest_received_at == 10.0


def test_restart_requeues_films_caught_mid_triage_until_attempts_run_out(jobs: JobTable) -> None:
    jobs.record(_new("1.1"))
    for _ in range(2):
        assert jobs.claim() is not None  # the process dies here, mid-triage
        assert jobs.recover(max_attempts=3) == 1
    assert jobs.claim() is not None  # third attempt, and the process dies again
    assert jobs.recover(max_attempts=3) == 0
    job = jobs.get("1.1")
    assert job is not None and job.state == "dead" and job.reason is not None
    assert job.reason.startswith("triage_interrupted")
    assert jobs.claim() is None  # the poison film no longer blocks anything


def test_delivery_to_every_destination_before_done(jobs: JobTable) -> None:
    jobs.record(_new("1.1"))
    jobs.claim()
    jobs.triaged("1.1", _result("urgent", 0.9), ["dimse", "stow"], now=5.0)
    assert [job.sop_instance_uid for job in jobs.due_deliveries(5.0, 10)] == ["1.1"]
    assert jobs.delivery_failed("1.1", "STOW-RS: ConnectionError", next_at=9.0) == 1
    assert jobs.due_deliveries(8.0, 10) == [] and jobs.next_delivery_at() == 9.0
    jobs.delivered("1.1", "dimse", now=9.5)
    job = jobs.get("1.1")
    assert job is not None and job.state == "triaged" and job.destinations == ["stow"]
    assert job.delivery_state == "retrying"
    jobs.delivered("1.1", "stow", now=10.0)
    job = jobs.get("1.1")
    assert job is not None and job.state == "done" and job.delivery_state == "delivered"
    assert job.delivery_error is None and job.delivered_at == 10.0


def test_retention_purges_finished_jobs_only(jobs: JobTable) -> None:
    jobs.record(_new("1.1"), now=1.0)
    jobs.record(_new("1.2"), now=1.0)
    jobs.claim()
    jobs.triaged("1.1", _result("routine", 0.1), [], now=2.0)  # no destination: done at once
    assert [job.sop_instance_uid for job in jobs.purgeable(before=3.0)] == ["1.1"]
    assert jobs.purgeable(before=1.5) == []
    jobs.purged("1.1", now=3.0)
    job = jobs.get("1.1")
    assert job is not None and job.spool_name is None and job.sr_name is None
    assert job.triage_level == "routine"  # the worklist keeps the result
    assert jobs.spool_names() == {"in-x.dcm"}  # 1.2's film, still queued


def test_worklist_urgent_first_then_newest_with_filters_and_paging(jobs: JobTable) -> None:
    for index, (study, level) in enumerate(
        [("s.old.urgent", "urgent"), ("s.routine", "routine"), ("s.new.urgent", "urgent"), ("s.queued", None)]
    ):
        uid = f"1.{index}"
        jobs.record(_new(uid, study), now=float(index))
        jobs.claim()
        if level is not None:
            jobs.triaged(uid, _result(level, 0.5), ["dimse"], now=10.0)
    everything, total = jobs.study_uids(StudyFilter(), limit=10, offset=0)
    assert total == 4
    assert everything == ["s.new.urgent", "s.old.urgent", "s.queued", "s.routine"]
    assert jobs.study_uids(StudyFilter(), limit=2, offset=1) == (["s.old.urgent", "s.queued"], 4)
    assert jobs.study_uids(StudyFilter(triage_level="urgent"), 10, 0) == (["s.new.urgent", "s.old.urgent"], 2)
    assert jobs.study_uids(StudyFilter(triage_level="routine"), 10, 0) == (["s.routine"], 1)
    assert jobs.study_uids(StudyFilter(received_after=2.0), 10, 0) == (["s.new.urgent", "s.queued"], 2)
    jobs.delivered("1.1", "dimse", now=11.0)
    assert jobs.study_uids(StudyFilter(delivery_state="delivered"), 10, 0) == (["s.routine"], 1)
    assert jobs.study_uids(StudyFilter(study_instance_uid="s.queued"), 10, 0) == (["s.queued"], 1)


def test_a_table_from_before_the_ood_columns_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(_SCHEMA.replace(",\n    ood_score           REAL,\n    ood_threshold       REAL", ""))
    old.execute(
        "INSERT INTO jobs (sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, "
        "source, received_at, state) VALUES ('1.1', '1.2', '1.3', '1.4', 'dimse', 1.0, 'queued')"
    )
    old.commit()
    assert "ood_score" not in {row[1] for row in old.execute("PRAGMA table_info(jobs)")}
    old.close()
    jobs = JobTable(path)
    try:
        job = jobs.get("1.1")
        assert job is not None and (job.ood_score, job.ood_threshold) == (None, None)
        claimed = jobs.claim()
        assert claimed is not None
        result = TriageResult(
            "PNEUMONIA", 0.9, "urgent", "m", "1", "9.1", "9.2", "sr.dcm", "sc.dcm", 0.7, 1.1
        )
        jobs.triaged("1.1", result, [], now=2.0)
        job = jobs.get("1.1")
        assert job is not None and (job.ood_score, job.ood_threshold) == (0.7, 1.1)
    finally:
        jobs.close()

"""Jobs: progress with rate and ETA, cancellation, single flight per key, failures as messages."""

from __future__ import annotations

import threading
import time

import pytest

from analysis.errors import Cancelled, InputError
from analysis.jobs import Job, JobRegistry, Progress, quiet_job


def test_progress_label_and_fraction():
    p = Progress(phase="scanning", done=15, total=20, unit="batches", rate=0.6, eta_s=8.0, message="loss 1.2")
    assert p.fraction == 0.75
    assert p.label() == "scanning · 15/20 batches · 0.6 batches/s · ETA 8 s · loss 1.2"
    assert Progress(phase="x", done=150, total=100).fraction == 1.0
    assert Progress().fraction is None and Progress().label() == "starting"
    assert Progress(phase="t", done=1, total=2, eta_s=7200).label().endswith("ETA 2.0 h")


def test_job_reports_phases_rate_and_eta():
    seen: list[Progress] = []
    job = Job(on_progress=seen.append, min_interval_s=0.0)
    job.phase("caching", total=10, unit="chunks")
    job._phase_started -= 2.0  # two seconds into the phase (the clock is the job's own)
    job.update(4)
    assert seen[0].phase == "caching" and seen[0].done == 0
    last = seen[-1]
    assert last.done == 4 and last.rate == pytest.approx(2.0, rel=0.05)
    assert last.eta_s == pytest.approx(3.0, rel=0.05)
    job.advance(1, message="ok")
    assert seen[-1].done == 5 and seen[-1].message == "ok"
    job.note("loss 3.1")
    assert seen[-1].message == "loss 3.1" and seen[-1].done == 5


def test_job_throttles_but_always_sends_the_end_of_a_phase():
    seen: list[Progress] = []
    job = Job(on_progress=seen.append, min_interval_s=60.0)
    job.phase("p", total=3)
    job.update(1)
    job.update(2)
    job.update(3)
    assert [p.done for p in seen] == [0, 3]


def test_cancel_is_seen_at_the_next_check():
    job = quiet_job()
    job.phase("training", total=5)
    job.check()
    job.cancel()
    assert job.should_stop()
    with pytest.raises(Cancelled, match="Stopped during 'training'"):
        job.check()


def test_registry_single_flight_and_results():
    registry = JobRegistry()
    gate = threading.Event()
    calls = []

    def work(job: Job) -> int:
        calls.append(1)
        job.phase("waiting", total=1)
        gate.wait(10)
        job.update(1)
        return 42

    first = registry.start("k", "Answer", work)
    second = registry.start("k", "Answer", work)
    assert first is second and first.running
    gate.set()
    status = registry.wait("k", timeout=10)
    assert status.state == "done" and status.result == 42 and len(calls) == 1
    assert status.progress.done == 1 and status.finished is not None
    assert registry.start("k", "Answer", work, restart=False) is status  # kept, not re-run
    assert len(calls) == 1


def test_registry_failures_and_cancel_become_states():
    registry = JobRegistry()

    def bad_input(job: Job) -> None:
        raise InputError("Layer must be a whole number from 0 to 29; got 99.")

    def crash(job: Job) -> None:
        raise ZeroDivisionError("boom")

    def long(job: Job) -> None:
        job.phase("looping")
        for _ in range(1000):
            job.check()
            time.sleep(0.01)

    registry.start("a", "A", bad_input)
    registry.start("b", "B", crash)
    registry.start("c", "C", long)
    assert registry.cancel("c") and not registry.cancel("nope")
    a, b, c = (registry.wait(k, 10) for k in "abc")
    assert (a.state, a.error) == ("failed", "Layer must be a whole number from 0 to 29; got 99.")
    assert (b.state, b.error) == ("failed", "ZeroDivisionError: boom")
    assert c.state == "cancelled" and "looping" in c.error
    assert {s.key for s in registry.statuses()} == {"a", "b", "c"}
    retried = registry.start("a", "A", lambda job: "fine")  # a failed job restarts under its key
    assert registry.wait("a", 10).result == "fine" and retried.key == "a"


def test_registry_keeps_a_bounded_history():
    registry = JobRegistry(keep_finished=3)
    for i in range(6):
        registry.start(f"j{i}", "J", lambda job: None)
        registry.wait(f"j{i}", 10)
    assert len(registry.statuses()) <= 4

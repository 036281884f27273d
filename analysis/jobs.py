"""Long jobs: one ``Progress`` record, one cancel rule, one registry, for the pages and the CLIs.

A long job (NRAG extraction, lens or SAE training, a neuron index build, a corpus scan, a definition
tree) is a plain function that takes a :class:`Job` and reports through it: ``job.phase("running the
model", total=320, unit="batches")`` then ``job.advance()`` per batch, and calls ``job.check()`` between
batches, which raises :class:`~analysis.errors.Cancelled` once cancel was asked (the one cancel rule;
``job.should_stop()`` asks without raising, for jobs that save what they finished first).

The page runs jobs in the server process through :class:`JobRegistry` (a thread per job, one job per
key: two users asking for the same index share one build and both see its progress; the model is
loaded once, not again in a worker process). The CLI runs the same function with :func:`tqdm_job`.
Hand-written because Dash's background callbacks run per browser session in a separate process (a
second copy of the model, no sharing across users) and no small library offers a single-flight,
cancellable, progress-reporting thread registry.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from analysis.errors import Cancelled, GlassboxError

log = logging.getLogger("glassbox.jobs")


@dataclass(frozen=True)
class Progress:
    """Where a job stands: its current phase, how far along (``done`` of ``total`` ``unit``), rate and ETA."""

    phase: str = "starting"
    done: float = 0.0
    total: float | None = None
    unit: str = ""
    message: str = ""
    rate: float | None = None  # units per second within this phase
    eta_s: float | None = None
    elapsed_s: float = 0.0  # since the job started

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    def label(self) -> str:
        """One line for a progress bar or a log: phase · done/total unit · rate · ETA · message."""
        parts = [self.phase]
        if self.total:
            parts.append(f"{self.done:,.0f}/{self.total:,.0f} {self.unit}".rstrip())
        elif self.done:
            parts.append(f"{self.done:,.0f} {self.unit}".rstrip())
        if self.rate:
            parts.append(f"{self.rate:,.1f} {self.unit or 'steps'}/s")
        if self.eta_s is not None and self.total and self.done < self.total:
            parts.append(f"ETA {_duration(self.eta_s)}")
        if self.message:
            parts.append(self.message)
        return " · ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "done": self.done, "total": self.total, "unit": self.unit,
                "message": self.message, "rate": self.rate, "eta_s": self.eta_s, "elapsed_s": self.elapsed_s,
                "fraction": self.fraction, "label": self.label()}


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Job:
    """The handle a long job reports through and checks for cancellation (thread-safe)."""

    def __init__(self, on_progress: Callable[[Progress], None] | None = None,
                 stop: threading.Event | None = None, min_interval_s: float = 0.2) -> None:
        self._on_progress = on_progress
        self._stop = stop or threading.Event()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._phase_started = self._started
        self._phase_done0 = 0.0
        self._last_sent = 0.0
        self._min_interval = min_interval_s
        self.progress = Progress()

    def phase(self, name: str, total: float | None = None, unit: str = "", done: float = 0.0,
              message: str = "") -> None:
        """Start a phase (resets the rate clock); reported at once."""
        with self._lock:
            self._phase_started = time.monotonic()
            self._phase_done0 = done
            self.progress = Progress(phase=name, done=done, total=total, unit=unit, message=message,
                                     elapsed_s=self._phase_started - self._started)
        self._send(force=True)

    def update(self, done: float, message: str | None = None, total: float | None = None) -> None:
        """Set how far the current phase is (rate and ETA follow from the phase clock)."""
        now = time.monotonic()
        with self._lock:
            p = self.progress
            total = p.total if total is None else total
            spent = now - self._phase_started
            moved = done - self._phase_done0
            rate = moved / spent if spent > 0.5 and moved > 0 else None
            eta = (total - done) / rate if rate and total is not None else None
            self.progress = replace(p, done=done, total=total, rate=rate, eta_s=eta, elapsed_s=now - self._started,
                                    message=p.message if message is None else message)
        self._send(force=total is not None and done >= total)

    def advance(self, n: float = 1.0, message: str | None = None) -> None:
        self.update(self.progress.done + n, message)

    def note(self, message: str) -> None:
        """Change the message only (e.g. the latest loss)."""
        with self._lock:
            self.progress = replace(self.progress, message=message)
        self._send()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` once cancel was asked (call between batches)."""
        if self._stop.is_set():
            raise Cancelled(f"Stopped during '{self.progress.phase}'.")

    def cancel(self) -> None:
        self._stop.set()

    def _send(self, force: bool = False) -> None:
        if self._on_progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_sent < self._min_interval:
            return
        self._last_sent = now
        self._on_progress(self.progress)


def quiet_job() -> Job:
    """A job handle that reports nowhere (direct calls, tests)."""
    return Job()


@dataclass
class JobStatus:
    """A registry job as the page sees it."""

    key: str
    title: str
    state: str = "running"  # running | done | failed | cancelled
    progress: Progress = field(default_factory=Progress)
    result: Any = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "state": self.state, "progress": self.progress.as_dict(),
                "error": self.error, "started": self.started, "finished": self.finished}


class JobRegistry:
    """Jobs of the server process, one per key (single flight), each in its own thread."""

    def __init__(self, keep_finished: int = 64) -> None:
        self._jobs: OrderedDict[str, tuple[JobStatus, Job, threading.Thread | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep_finished

    def start(self, key: str, title: str, work: Callable[[Job], Any], *, restart: bool = True) -> JobStatus:
        """Run ``work(job)`` unless a job with this key is running (then that one is returned).

        A finished job with the same key is replaced when ``restart`` (a retry after a failure or a
        cancel); otherwise its status is returned as it is.
        """
        with self._lock:
            current = self._jobs.get(key)
            if current is not None and (current[0].running or not restart):
                return current[0]
            status = JobStatus(key=key, title=title)
            job = Job(on_progress=lambda p, s=status: setattr(s, "progress", p))
            thread = threading.Thread(target=self._run, args=(status, job, work), name=f"job:{key}", daemon=True)
            self._jobs[key] = (status, job, thread)
            self._jobs.move_to_end(key)
            self._trim()
        thread.start()
        return status

    def _run(self, status: JobStatus, job: Job, work: Callable[[Job], Any]) -> None:
        try:
            status.result = work(job)
            status.state = "cancelled" if job.should_stop() else "done"
        except Cancelled as exc:
            status.state, status.error = "cancelled", str(exc)
        except GlassboxError as exc:
            status.state, status.error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - a job's failure is shown in the page, the server keeps serving
            log.error("job %s failed:\n%s", status.key, traceback.format_exc())
            status.state, status.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            status.progress = job.progress
            status.finished = time.time()

    def status(self, key: str) -> JobStatus | None:
        with self._lock:
            entry = self._jobs.get(key)
        return entry[0] if entry is not None else None

    def cancel(self, key: str) -> bool:
        """Ask a running job to stop (it stops at its next check); False when none runs under ``key``."""
        with self._lock:
            entry = self._jobs.get(key)
        if entry is None or not entry[0].running:
            return False
        entry[1].cancel()
        return True

    def wait(self, key: str, timeout: float | None = None) -> JobStatus | None:
        """Block until the job under ``key`` finishes (tests, the CLI)."""
        with self._lock:
            entry = self._jobs.get(key)
        if entry is None:
            return None
        if entry[2] is not None:
            entry[2].join(timeout)
        return entry[0]

    def statuses(self) -> list[JobStatus]:
        with self._lock:
            return [entry[0] for entry in self._jobs.values()]

    def _trim(self) -> None:
        finished = [k for k, (s, _j, _t) in self._jobs.items() if not s.running]
        for key in finished[: max(0, len(self._jobs) - self._keep)]:
            self._jobs.pop(key, None)


def tqdm_job(desc: str = "") -> Job:
    """A job handle for the CLI: one tqdm bar per phase, the message as its postfix."""
    from tqdm.auto import tqdm

    state: dict[str, Any] = {"bar": None, "phase": None}

    def show(progress: Progress) -> None:
        bar = state["bar"]
        if progress.phase != state["phase"]:
            if bar is not None:
                bar.close()
            name = f"{desc}: {progress.phase}" if desc else progress.phase
            bar = state["bar"] = tqdm(total=progress.total, desc=name, unit=f" {progress.unit}".rstrip() or "it")
            state["phase"] = progress.phase
        if progress.total is not None and bar.total != progress.total:
            bar.total = progress.total
        bar.n = progress.done
        if progress.message:
            bar.set_postfix_str(progress.message, refresh=False)
        bar.refresh()
        if progress.total is not None and progress.done >= progress.total:
            bar.close()

    return Job(on_progress=show, min_interval_s=0.5)

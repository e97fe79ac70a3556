"""JSON-lines event log of every safety intervention and state change.

The control loop must never block on a disk, so `EventLog.emit` only appends
to an in-memory queue; a writer thread drains it to the file. Each line is
`{"t": monotonic s, "wall": unix s, "tick": n, "kind": str, ...details}`.
`events` keeps every record in memory as well (bounded), which is what the
tests and the benchmark read.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if np.isfinite(f) else str(f)  # NaN/inf are not JSON: keep them readable
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


class EventLog:
    def __init__(self, path: str | Path | None = None, keep: int = 100_000):
        self.path = Path(path) if path else None
        self.events: collections.deque[dict] = collections.deque(maxlen=keep)
        self._q: queue.SimpleQueue[dict | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._thread = threading.Thread(target=self._writer, name="event-log", daemon=True)
            self._thread.start()

    def emit(self, kind: str, tick: int = -1, t: float | None = None, **detail) -> dict:
        rec = {"t": time.monotonic() if t is None else t, "wall": time.time(), "tick": tick, "kind": kind}
        rec.update(detail)
        self.events.append(rec)
        if self._thread is not None:
            self._q.put(rec)
        return rec

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events]

    def first(self, kind: str) -> dict | None:
        return next((e for e in self.events if e["kind"] == kind), None)

    def _writer(self) -> None:
        assert self.path is not None
        with open(self.path, "a", buffering=1) as f:
            while True:
                rec = self._q.get()
                if rec is None:
                    f.flush()
                    os.fsync(f.fileno())
                    return
                try:
                    f.write(json.dumps(_jsonable(rec)) + "\n")
                except (TypeError, ValueError) as exc:  # never let logging kill the writer
                    log.warning("event log: could not write %s: %s", rec.get("kind"), exc)

    def close(self) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout=5)
            self._thread = None

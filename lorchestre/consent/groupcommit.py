"""Group commit for the ledger: concurrent appends of one process share a transaction.

Each POST /consent queues its choice; the first thread to take the process's leader
lock writes every queued choice in one write transaction (one BEGIN IMMEDIATE or
advisory lock, one COMMIT, one fsync), in queue order, then wakes the others. Every
caller still returns only after *its* record is committed (the cookie follows the
commit), seq order is commit order, and a failed transaction fails every choice in
it with DatabaseUnavailable, exactly as if each had failed alone (503, fail closed).
Under load this turns N lock hand-overs and N fsyncs into one (docs/performance.md, P3).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app

from ..database import DatabaseUnavailable

MAX_BATCH = 64


@dataclass
class Pending:
    """One caller's choice waiting for a commit."""

    work: dict
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None


class GroupCommit:
    """The queue and leader lock of one application in one process."""

    def __init__(self) -> None:
        self.leader = threading.Lock()
        self.guard = threading.Lock()
        self.queue: list[Pending] = []

    def submit(
        self, work: dict, write_batch: Callable[[list[dict]], list], timeout_s: float
    ):
        """Queue ``work``; return its result once committed, or raise its error."""
        mine = Pending(work)
        with self.guard:
            self.queue.append(mine)
        while not mine.done.is_set():
            if not self.leader.acquire(timeout=timeout_s):
                with self.guard:
                    if mine in self.queue:  # never written: safe to give up
                        self.queue.remove(mine)
                        raise DatabaseUnavailable("ledger writer busy (group commit)")
                mine.done.wait()  # a leader took it: wait for its outcome
                break
            try:
                if mine.done.is_set():
                    break
                with self.guard:
                    batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
                try:
                    results = write_batch([p.work for p in batch])
                except BaseException as exc:  # every choice of the batch failed
                    for p in batch:
                        p.error = exc
                else:
                    for p, result in zip(batch, results, strict=True):
                        p.result = result
                finally:
                    for p in batch:
                        p.done.set()
            finally:
                self.leader.release()
        if mine.error is not None:
            if isinstance(mine.error, DatabaseUnavailable):
                raise DatabaseUnavailable(str(mine.error)) from mine.error
            raise mine.error
        return mine.result


def group_commit() -> GroupCommit:
    """This application's group commit (one per app and process)."""
    ext = current_app.extensions
    found = ext.get("lorchestre_group_commit")
    if found is None:
        found = ext.setdefault("lorchestre_group_commit", GroupCommit())
    return found

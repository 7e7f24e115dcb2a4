"""A work queue of object keys with delayed retries, as client-go's workqueue provides.

A key is processed by at most one worker at a time; adding a key that is queued already is
a no-op, adding one that is being processed queues it again for after. :class:`Reconciler`
runs worker threads over a queue until it is stopped.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

_log = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    """Deduplicating FIFO of keys, with :meth:`add_after` for delayed retries."""

    def __init__(self) -> None:
        self._ready: list[K] = []
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._again: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._shut = False

    def add(self, key: K) -> None:
        """Queue ``key`` now (once, however often it is added before it is taken)."""
        with self._cond:
            if key in self._active:
                self._again.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._ready.append(key)
                self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` once ``delay`` seconds have passed."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._order), key))
            self._cond.notify()

    def get(self) -> K | None:
        """The next key to work on (block until there is one); None once shut down."""
        with self._cond:
            while not self._shut:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    key = heapq.heappop(self._delayed)[2]
                    if key in self._active:
                        self._again.add(key)
                    elif key not in self._queued:
                        self._queued.add(key)
                        self._ready.append(key)
                if self._ready:
                    key = self._ready.pop(0)
                    self._queued.discard(key)
                    self._active.add(key)
                    return key
                timeout = self._delayed[0][0] - now if self._delayed else None
                self._cond.wait(timeout)
            return None

    def done(self, key: K) -> None:
        """Work on ``key`` is finished; requeue it if it was added meanwhile."""
        with self._cond:
            self._active.discard(key)
            if key in self._again:
                self._again.discard(key)
                if key not in self._queued:
                    self._queued.add(key)
                    self._ready.append(key)
                    self._cond.notify()

    def shut_down(self) -> None:
        with self._cond:
            self._shut = True
            self._cond.notify_all()


class Reconciler(Generic[K]):
    """Worker threads that call ``reconcile(key)`` for each queued key.

    ``reconcile`` returns None when done, or a delay in seconds to look at the key again.
    An exception is logged and the key retried after ``error_delay`` seconds.
    """

    def __init__(
        self,
        name: str,
        reconcile: Callable[[K], float | None],
        workers: int = 1,
        error_delay: float = 1.0,
    ) -> None:
        self.name = name
        self.queue: WorkQueue[K] = WorkQueue()
        self._reconcile = reconcile
        self._error_delay = error_delay
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.queue.shut_down()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                again = self._reconcile(key)
            except Exception:
                _log.exception("%s: reconciling %s failed", self.name, key)
                again = self._error_delay
            finally:
                self.queue.done(key)
            if again is not None:
                self.queue.add_after(key, again)

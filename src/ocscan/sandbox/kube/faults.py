"""Injectable faults: error answers, latency, hangs and dropped watches.

Each rule matches requests by verb, resource (``pods`` or ``pods/log``) and namespace, and
fires deterministically (``times=N``: the next N matching requests) or with a probability
drawn from a seeded generator, so a failing test replays exactly::

    emulator.faults.fail(verb="list", resource="pods", times=2)           # 500, twice
    emulator.faults.fail(resource="secrets", status=429, retry_after=1)   # every secrets call
    emulator.faults.delay(0.2, verb="get", probability=0.5)               # seeded coin
    emulator.faults.hang(verb="create", resource="pods", times=1)         # until client gives up
    emulator.faults.drop_watches(resource="pods", after_events=3)         # cut the stream
    emulator.faults.lose_answer(verb="create", resource="jobs", times=1)  # done, unanswered
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from enum import StrEnum

from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.kube.routing import RequestInfo


class FaultKind(StrEnum):
    """What a fault does to the request it hits."""

    ERROR = "error"
    DELAY = "delay"
    HANG = "hang"
    DROP_WATCH = "drop_watch"
    LOSE_ANSWER = "lose_answer"


_REASONS = {
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: injected fault"),
    503: ("ServiceUnavailable", "The server is currently unable to handle the request"),
    504: ("Timeout", "The server was unable to return a response in the time allotted"),
}


@dataclass
class FaultRule:
    """One rule; ``None`` filters match anything. ``times=None`` means without end."""

    kind: FaultKind
    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    times: int | None = None
    probability: float = 1.0
    status: int = 500
    retry_after: int | None = None
    message: str | None = None
    seconds: float = 0.0
    after_events: int = 0
    hits: int = field(default=0, init=False)

    def matches(self, info: RequestInfo) -> bool:
        """Whether this rule applies to ``info`` (ignoring ``times`` and ``probability``)."""
        return (
            (self.verb is None or self.verb == info.verb)
            and (self.resource is None or self.resource == info.resource)
            and (self.namespace is None or self.namespace == info.namespace)
        )

    def error(self) -> ApiError:
        """The error an ERROR rule answers with."""
        reason, default = _REASONS.get(self.status, ("InternalError", "injected fault"))
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        details = {"retryAfterSeconds": self.retry_after} if self.retry_after is not None else None
        return ApiError(self.status, reason, self.message or default, details, headers)


@dataclass(frozen=True)
class Effects:
    """What the faults that fired do to one request."""

    error: ApiError | None = None
    delay: float = 0.0
    hang: float | None = None
    drop_watch_after: int | None = None
    lose_answer: bool = False


class FaultInjector:
    """The active fault rules; thread-safe. ``seed`` makes probabilistic rules replayable."""

    def __init__(self, seed: int | None = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)  # noqa: S311 - replayable test faults, not secrets

    def seed(self, seed: int) -> None:
        """Restart the random sequence probabilistic rules draw from."""
        with self._lock:
            self._random.seed(seed)

    def add(self, rule: FaultRule) -> FaultRule:
        """Activate ``rule``; returns it (its ``hits`` counts how often it fired)."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def fail(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        status: int = 500,
        times: int | None = None,
        probability: float = 1.0,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> FaultRule:
        """Answer matching requests with ``status`` (500, 429 with ``Retry-After``...)."""
        return self.add(
            FaultRule(
                FaultKind.ERROR,
                verb,
                resource,
                namespace,
                times,
                probability,
                status=status,
                retry_after=retry_after,
                message=message,
            )
        )

    def delay(
        self,
        seconds: float,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        times: int | None = None,
        probability: float = 1.0,
    ) -> FaultRule:
        """Answer matching requests ``seconds`` late."""
        return self.add(
            FaultRule(
                FaultKind.DELAY, verb, resource, namespace, times, probability, seconds=seconds
            )
        )

    def hang(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        times: int | None = None,
        probability: float = 1.0,
        seconds: float = 300.0,
    ) -> FaultRule:
        """Don't answer until the client gives up (closes the connection); after ``seconds``
        answer 504 Timeout."""
        return self.add(
            FaultRule(
                FaultKind.HANG,
                verb,
                resource,
                namespace,
                times,
                probability,
                seconds=seconds,
                status=504,
            )
        )

    def drop_watches(
        self,
        *,
        resource: str | None = None,
        namespace: str | None = None,
        after_events: int = 0,
        times: int | None = None,
        probability: float = 1.0,
    ) -> FaultRule:
        """Close matching watch streams abruptly after ``after_events`` events."""
        return self.add(
            FaultRule(
                FaultKind.DROP_WATCH,
                "watch",
                resource,
                namespace,
                times,
                probability,
                after_events=after_events,
            )
        )

    def lose_answer(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        times: int | None = None,
        probability: float = 1.0,
    ) -> FaultRule:
        """Carry out matching requests, then cut the connection instead of answering: the
        client cannot tell whether its request took effect."""
        return self.add(
            FaultRule(FaultKind.LOSE_ANSWER, verb, resource, namespace, times, probability)
        )

    def remove(self, rule: FaultRule) -> None:
        """Deactivate ``rule``."""
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        """Deactivate every rule."""
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        """The active rules."""
        with self._lock:
            return list(self._rules)

    def check(self, info: RequestInfo) -> Effects:
        """Fire the rules that match ``info``; what they do to the request."""
        error: ApiError | None = None
        delay = 0.0
        hang: float | None = None
        drop: int | None = None
        lose = False
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(info):
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                rule.hits += 1
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                if rule.kind is FaultKind.ERROR and error is None:
                    error = rule.error()
                elif rule.kind is FaultKind.DELAY:
                    delay += rule.seconds
                elif rule.kind is FaultKind.HANG and hang is None:
                    hang = rule.seconds
                elif rule.kind is FaultKind.DROP_WATCH and drop is None:
                    drop = rule.after_events
                elif rule.kind is FaultKind.LOSE_ANSWER:
                    lose = True
        return Effects(error, delay, hang, drop, lose)

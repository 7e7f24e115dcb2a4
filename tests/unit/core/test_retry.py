"""Transient API failures are retried, whatever the shape of the error body."""

from __future__ import annotations

import httpx2
import pytest

from ocscan.kube import retry
from ocscan.kube.retry import describe, is_transient, retrying


def status_error(code: int, body: str = "<html>proxy page</html>") -> httpx2.HTTPStatusError:
    request = httpx2.Request("GET", "https://api.example/api/v1/pods")
    response = httpx2.Response(code, request=request, text=body,
                               headers={"Content-Type": "text/html"})  # fmt: skip
    return httpx2.HTTPStatusError("error", request=request, response=response)


def test_a_non_json_proxy_error_is_judged_by_its_status() -> None:
    assert is_transient(status_error(502))
    assert is_transient(status_error(429))
    assert not is_transient(status_error(403))
    assert describe(status_error(503)) == "HTTP 503 Service Unavailable"
    assert "proxy page" not in describe(status_error(503))


async def test_retrying_goes_through_a_proxys_502s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "BASE_DELAY", 0.0)  # no real waiting in a unit test
    answers: list[BaseException | str] = [status_error(502), status_error(502), "pods"]

    async def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert await retrying(call, what="list pods") == "pods"


async def test_a_refusal_is_raised_at_once() -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise status_error(403)

    with pytest.raises(httpx2.HTTPStatusError):
        await retrying(call, what="list pods")
    assert calls == 1

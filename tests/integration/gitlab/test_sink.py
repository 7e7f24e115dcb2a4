"""GitLabAgentSink against the GitLab emulator over real HTTP: uploads, resolution, retries."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from gitlab_support import (
    AGENT_ID,
    AGENT_TOKEN,
    KAS_SECRET,
    container,
    cycle,
    finding,
    make_sink,
    workload,
)

from ocscan.report.gitlab_api import GitLabAgentSink, GitLabApiError, RetryPolicy
from ocscan.report.model import CycleReport
from ocscan.sandbox.gitlab import BASE_PATH, GitLabEmulator, RecordedRequest
from ocscan.scan.report import Severity

OPENSSL = finding(
    "CVE-2024-0001", "openssl", severity=Severity.CRITICAL, installed="3.0.11", fixed="3.0.13"
)
REQUESTS = finding("GHSA-j8r2-6x86-q33q", "requests", severity=Severity.MEDIUM, fixed=None)
ZLIB = finding("CVE-2024-0002", "zlib", severity=Severity.LOW, installed="1.2.13", fixed="1.3")
CURL = finding("CVE-2024-0003", "curl", severity=Severity.UNKNOWN)


def shop_report() -> CycleReport:
    return cycle(
        workload("shop", "web", container("app", OPENSSL, REQUESTS)),
        workload("shop", "nightly", container("job", ZLIB), kind="CronJob"),
        workload("billing", "api", container("api", CURL), kind="StatefulSet"),
    )


def puts(gitlab: GitLabEmulator) -> list[RecordedRequest]:
    return [r for r in gitlab.requests if r.method == "PUT"]


def posts(gitlab: GitLabEmulator) -> list[RecordedRequest]:
    return [r for r in gitlab.requests if r.method == "POST"]


def states(gitlab: GitLabEmulator) -> dict[str, str]:
    """``package -> state`` of every stored finding."""
    return {f.package_name: f.state for f in gitlab.findings()}


def kas_claims(request: RecordedRequest) -> dict[str, Any]:
    """The verified claims of the request's Gitlab-Kas-Api-Request JWT."""
    claims: dict[str, Any] = jwt.decode(
        request.headers["gitlab-kas-api-request"],
        KAS_SECRET,
        algorithms=["HS256"],
        audience="gitlab",
        issuer="gitlab-kas",
    )
    return claims


def put_of(package: str) -> Any:
    """A fault filter: PUT requests of one package."""
    return lambda method, path, body: (
        method == "PUT"
        and body["vulnerability"]["location"]["dependency"]["package"]["name"] == package
    )


async def test_findings_are_uploaded_in_gitlab_format_and_others_resolved(
    gitlab: GitLabEmulator, sink: GitLabAgentSink
) -> None:
    result = await sink.deliver(shop_report())

    assert result.resolution == "resolved" and result.ok, result
    assert (result.findings, result.uploaded, result.failures) == (4, 4, [])
    stored = gitlab.findings(state="detected")
    assert sorted(result.uuids) == sorted(f.uuid for f in stored)
    assert states(gitlab) == dict.fromkeys(["openssl", "requests", "zlib", "curl"], "detected")
    [openssl] = [r.body for r in puts(gitlab) if "openssl" in r.body["vulnerability"]["name"]]
    assert openssl == {
        "vulnerability": {
            "name": "CVE-2024-0001 in openssl",
            "severity": "critical",
            "confidence": "unknown",
            "message": "openssl: flaw CVE-2024-0001",
            "description": "A flaw in openssl.",
            "solution": "Upgrade openssl to 3.0.13",
            "links": [
                {"url": "https://avd.aquasec.com/nvd/cve-2024-0001"},
                {"url": "https://nvd.nist.gov/vuln/detail/CVE-2024-0001"},
            ],
            "identifiers": [
                {
                    "type": "cve",
                    "name": "CVE-2024-0001",
                    "value": "CVE-2024-0001",
                    "url": "https://avd.aquasec.com/nvd/cve-2024-0001",
                }
            ],
            "location": {
                "image": "registry.example:5000/app:1.0",
                "operating_system": "debian 12.5",
                "dependency": {"package": {"name": "openssl"}, "version": "3.0.11"},
                "kubernetes_resource": {
                    "namespace": "shop",
                    "name": "web",
                    "kind": "Deployment",
                    "container_name": "app",
                    "agent_id": AGENT_ID,
                },
            },
        },
        "scanner": {
            "id": "trivy",
            "name": "Trivy",
            "vendor": {"name": "Aqua Security"},
            "version": "0.76.0",
        },
    }
    by_package = {
        r.body["vulnerability"]["location"]["dependency"]["package"]["name"]: r.body
        for r in puts(gitlab)
    }
    requests_vuln = by_package["requests"]["vulnerability"]
    assert requests_vuln["identifiers"][0]["type"] == "ghsa"
    assert requests_vuln["severity"] == "medium"
    assert "solution" not in requests_vuln  # no fixed version
    assert by_package["curl"]["vulnerability"]["severity"] == "unknown"
    zlib_resource = by_package["zlib"]["vulnerability"]["location"]["kubernetes_resource"]
    assert zlib_resource["kind"] == "CronJob"
    [post] = posts(gitlab)
    assert post.path == BASE_PATH + "/scan_result"
    assert sorted(post.body["uuids"]) == sorted(result.uuids)


async def test_every_request_carries_the_agent_token_and_a_valid_kas_jwt(
    gitlab: GitLabEmulator, sink: GitLabAgentSink
) -> None:
    started = time.time()
    await sink.deliver(shop_report())
    finished = time.time()

    assert len(gitlab.requests) == 5
    for request in gitlab.requests:
        assert request.headers["authorization"] == f"Bearer {AGENT_TOKEN}"
        claims = kas_claims(request)
        assert int(started) - 1 <= claims["iat"] <= finished + 1
        assert claims["nbf"] == claims["iat"] - 5
        assert claims["exp"] == claims["iat"] + 30


async def test_a_jwt_is_minted_for_each_attempt_and_retry_after_is_honoured(
    gitlab: GitLabEmulator,
) -> None:
    gitlab.fail_next(1, 429, method="PUT", retry_after="1")
    async with make_sink(gitlab) as sink:
        started = time.monotonic()
        result = await sink.deliver(cycle(workload("shop", "web", container("app", OPENSSL))))
        elapsed = time.monotonic() - started

    assert result.ok
    first, second = puts(gitlab)
    assert (first.status, second.status) == (429, 200)
    assert elapsed >= 1.0  # FAST_RETRY alone would have waited at most 0.05 s
    assert kas_claims(second)["iat"] >= kas_claims(first)["iat"] + 1


async def test_uuids_are_stable_across_cycles(
    gitlab: GitLabEmulator, sink: GitLabAgentSink
) -> None:
    first = await sink.deliver(shop_report())
    second = await sink.deliver(shop_report())

    assert first.ok and second.ok
    assert second.uuids == first.uuids
    assert len(gitlab.findings()) == 4
    assert all(f.uploads == 2 and f.state == "detected" for f in gitlab.findings())


async def test_a_fixed_finding_is_resolved_and_the_others_stay_open(
    gitlab: GitLabEmulator, sink: GitLabAgentSink
) -> None:
    await sink.deliver(shop_report())
    patched = cycle(
        workload("shop", "web", container("app", REQUESTS)),
        workload("shop", "nightly", container("job", ZLIB), kind="CronJob"),
        workload("billing", "api", container("api", CURL), kind="StatefulSet"),
    )
    result = await sink.deliver(patched)

    assert result.ok
    assert states(gitlab) == {
        "openssl": "resolved",
        "requests": "detected",
        "zlib": "detected",
        "curl": "detected",
    }


async def test_a_clean_cluster_resolves_every_old_finding(
    gitlab: GitLabEmulator, sink: GitLabAgentSink
) -> None:
    await sink.deliver(shop_report())
    clean = cycle(
        workload("shop", "web", container("app")),
        workload("billing", "api", container("api")),
    )
    result = await sink.deliver(clean)

    assert (result.resolution, result.findings, result.uuids) == ("resolved", 0, [])
    assert posts(gitlab)[-1].body == {"uuids": []}
    assert set(states(gitlab).values()) == {"resolved"}


async def test_an_incompletely_scanned_namespace_resolves_nothing(
    gitlab: GitLabEmulator, sink: GitLabAgentSink
) -> None:
    await sink.deliver(shop_report())
    # billing's scans failed this cycle: its finding is simply absent from the report.
    partial = cycle(
        workload("shop", "web", container("app", REQUESTS)),
        workload("shop", "nightly", container("job", ZLIB), kind="CronJob"),
        namespaces={"shop": True, "billing": False},
    )
    gitlab.clear_requests()
    result = await sink.deliver(partial)

    assert result.resolution == "skipped" and not result.ok
    assert result.incomplete_namespaces == ["billing"]
    assert result.reason == "namespaces not fully scanned: billing"
    assert posts(gitlab) == []
    assert len(puts(gitlab)) == 2  # what was found is still uploaded
    assert set(states(gitlab).values()) == {"detected"}


async def test_a_persistently_failing_put_resolves_nothing(
    gitlab: GitLabEmulator, sink: GitLabAgentSink
) -> None:
    await sink.deliver(shop_report())
    gitlab.clear_requests()
    gitlab.fail_next(1000, 500, where=put_of("zlib"))
    patched = cycle(
        workload("shop", "web", container("app", REQUESTS)),
        workload("shop", "nightly", container("job", ZLIB), kind="CronJob"),
        workload("billing", "api", container("api", CURL), kind="StatefulSet"),
    )
    result = await sink.deliver(patched)

    assert result.resolution == "skipped"
    assert result.reason is not None and "uploads failed" in result.reason
    [failure] = result.failures
    assert (failure.namespace, failure.package_name, failure.vulnerability_id) == (
        "shop",
        "zlib",
        "CVE-2024-0002",
    )
    expected = f"PUT {BASE_PATH}: HTTP 500 after 4 attempts: 500 Internal Server Error"
    assert expected in failure.message
    assert len([r for r in puts(gitlab) if r.status == 500]) == 4  # FAST_RETRY.attempts
    assert posts(gitlab) == []
    assert states(gitlab)["openssl"] == "detected"  # fixed, but not resolved this cycle


async def test_a_refused_finding_is_reported_and_the_rest_still_uploaded(
    gitlab: GitLabEmulator, sink: GitLabAgentSink
) -> None:
    gitlab.fail_next(1, 400, where=put_of("openssl"))
    result = await sink.deliver(shop_report())

    assert result.resolution == "skipped"
    assert result.reason == "1 of 4 uploads failed"
    assert [f.package_name for f in result.failures] == ["openssl"]
    assert "HTTP 400" in result.failures[0].message
    assert result.uploaded == 3 and result.not_attempted == 0
    assert len(puts(gitlab)) == 4  # a 400 is not retried
    assert posts(gitlab) == []


async def test_transient_errors_are_retried_until_delivery_succeeds(
    gitlab: GitLabEmulator, sink: GitLabAgentSink
) -> None:
    gitlab.fail_next(2, 503, method="PUT")
    gitlab.fail_next(1, 429, method="PUT", retry_after="0")
    gitlab.disconnect_next(1, method="PUT")
    gitlab.fail_next(1, 502, method="POST")
    gitlab.fail_next(1, 500, method="POST")

    result = await sink.deliver(shop_report())

    assert result.ok and result.uploaded == 4
    assert set(states(gitlab).values()) == {"detected"}
    assert [r.fault for r in gitlab.requests if r.fault] == [
        "status 503",
        "status 503",
        "status 429",
        "disconnect",
        "status 502",
        "status 500",
    ]
    assert [r.status for r in posts(gitlab)] == [502, 500, 200]


async def test_a_timeout_is_retried(gitlab: GitLabEmulator) -> None:
    gitlab.delay_next(1, 60, method="PUT")  # held until the emulator stops
    async with httpx.AsyncClient(timeout=0.2) as client:
        sink = make_sink(gitlab, client=client)
        result = await sink.deliver(cycle(workload("shop", "web", container("app", OPENSSL))))
    gitlab.stop()

    assert result.ok and len(result.uuids) == 1
    assert sorted((r.status, r.fault) for r in puts(gitlab)) == [(0, "delay 60 s"), (200, None)]


async def test_an_unreachable_gitlab_stops_the_uploads(gitlab: GitLabEmulator) -> None:
    gitlab.disconnect_next(1000)
    async with make_sink(gitlab, concurrency=1) as sink:
        result = await sink.deliver(shop_report())

    assert result.resolution == "skipped"
    assert (result.uploaded, len(result.failures), result.not_attempted) == (0, 1, 3)
    assert "no answer after 4 attempts: connection failed" in result.failures[0].message
    assert result.reason == "4 of 4 uploads failed"
    assert len(gitlab.requests) == 4


async def test_a_refused_agent_is_a_clear_error_and_stops_everything(
    gitlab: GitLabEmulator,
) -> None:
    async with make_sink(gitlab, secret=b"not-the-kas-secret-of-this-gitla", concurrency=2) as sink:
        with pytest.raises(GitLabApiError) as caught:
            await sink.deliver(shop_report())

    error = caught.value
    assert error.status_code == 401
    assert str(error) == (
        f"GitLab PUT {BASE_PATH}: HTTP 401: 401 Unauthorized"
        " (check the agent token and the KAS shared secret)"
    )
    assert len(gitlab.requests) == 2  # one per worker; not retried, nothing more sent
    assert posts(gitlab) == [] and gitlab.findings() == []


async def test_a_wrong_agent_token_is_refused(gitlab: GitLabEmulator) -> None:
    async with make_sink(gitlab, token="glagent-revoked") as sink:
        with pytest.raises(GitLabApiError, match="HTTP 401"):
            await sink.resolve([])
    assert [r.status for r in gitlab.requests] == [401]


async def test_two_containers_of_a_workload_share_one_gitlab_finding(
    gitlab: GitLabEmulator, sink: GitLabAgentSink
) -> None:
    report = cycle(
        workload("shop", "web", container("sidecar", ZLIB), container("app", ZLIB, OPENSSL)),
        workload("shop", "api", container("app", ZLIB)),
    )
    result = await sink.deliver(report)

    assert result.ok and result.findings == 4 - 1
    zlib_puts = [r.body for r in puts(gitlab) if "zlib" in r.body["vulnerability"]["name"]]
    containers = {
        (
            b["vulnerability"]["location"]["kubernetes_resource"]["name"],
            b["vulnerability"]["location"]["kubernetes_resource"]["container_name"],
        )
        for b in zlib_puts
    }
    assert containers == {("web", "app"), ("api", "app")}
    assert len(gitlab.findings()) == 3


async def test_policies_configuration(gitlab: GitLabEmulator, sink: GitLabAgentSink) -> None:
    assert await sink.policies_configuration() is None  # 402: no licence
    gitlab.policies = [{"cadence": "0 2 * * *"}]
    assert await sink.policies_configuration() == [{"cadence": "0 2 * * *"}]


@pytest.mark.parametrize(
    "retry_after",
    [lambda: "3600", lambda: email.utils.formatdate(time.time() + 3600, usegmt=True)],
    ids=["seconds", "http-date"],
)
async def test_a_retry_after_beyond_the_limit_ends_the_retries(
    gitlab: GitLabEmulator, retry_after: Callable[[], str]
) -> None:
    gitlab.fail_next(1, 429, method="POST", retry_after=retry_after())
    retry = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=60)
    async with make_sink(gitlab, retry=retry) as sink:
        result = await sink.deliver(cycle())

    assert result.resolution == "failed"
    assert result.reason is not None
    assert result.reason.startswith(
        f"GitLab POST {BASE_PATH}/scan_result: HTTP 429: 429 Too Many Requests"
        " (GitLab asked to retry after 3"  # 3600 s, or a second less for a date
    )
    assert len(gitlab.requests) == 1

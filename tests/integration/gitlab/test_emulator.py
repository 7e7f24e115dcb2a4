"""The GitLab emulator enforces the agent API contract, spoken to with plain HTTP requests."""

from __future__ import annotations

import copy
import ssl
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from gitlab_support import AGENT_ID, AGENT_TOKEN, KAS_SECRET

from ocscan.report.gitlab_api import kas_jwt
from ocscan.sandbox.gitlab import BASE_PATH, GitLabEmulator

BODY: dict[str, Any] = {
    "vulnerability": {
        "name": "CVE-2024-0001 in openssl",
        "severity": "High",
        "confidence": "Unknown",
        "identifiers": [{"type": "cve", "name": "CVE-2024-0001", "value": "CVE-2024-0001"}],
        "location": {
            "image": "registry.example/app:1",
            "operating_system": "debian 12.5",
            "dependency": {"package": {"name": "openssl"}, "version": "3.0.1"},
            "kubernetes_resource": {
                "namespace": "shop",
                "name": "web",
                "kind": "Deployment",
                "container_name": "app",
                "agent_id": AGENT_ID,
            },
        },
    },
    "scanner": {"id": "trivy", "name": "Trivy", "vendor": {"name": "Aqua Security"}},
}


def auth(token: str = AGENT_TOKEN, kas: str | None = None) -> dict[str, str]:
    kas = kas if kas is not None else kas_jwt(KAS_SECRET)
    return {"Authorization": f"Bearer {token}", "Gitlab-Kas-Api-Request": kas}


@pytest.fixture(scope="module")
def tls_context() -> ssl.SSLContext:
    # Loading the CA bundle is most of an httpx client's start-up: do it once.
    return ssl.create_default_context()


@pytest.fixture
def api(gitlab: GitLabEmulator, tls_context: ssl.SSLContext) -> Iterator[httpx.Client]:
    """A client of the emulator's agent API routes."""
    with httpx.Client(base_url=gitlab.url + BASE_PATH, verify=tls_context) as client:
        yield client


def put(api: httpx.Client, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return api.put("", json=body, headers=auth() if headers is None else headers)


def scan_result(api: httpx.Client, uuids: list[str], token: str = AGENT_TOKEN) -> httpx.Response:
    return api.post("/scan_result", json={"uuids": uuids}, headers=auth(token))


def with_changes(**changes: Any) -> dict[str, Any]:
    """BODY with ``vulnerability`` paths (``a__b__c``) set, or removed when the value is None."""
    body = copy.deepcopy(BODY)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = body["vulnerability"]
        for part in parents:
            node = node[part]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return body


def signed(secret: bytes = KAS_SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    """A KAS JWT with valid claims, except those given (None removes a claim)."""
    now = int(time.time())
    payload = {"iss": "gitlab-kas", "aud": "gitlab", "iat": now, "nbf": now - 5, "exp": now + 30}
    payload.update(claims)
    with warnings.catch_warnings():  # a 32-byte key is short for HS512, on purpose here
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm)


def test_valid_put_is_stored_with_lower_case_severity(
    gitlab: GitLabEmulator, api: httpx.Client
) -> None:
    response = put(api, BODY)
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    [stored] = gitlab.findings()
    assert stored.uuid == uuid
    assert stored.state == "detected"
    assert stored.agent_id == AGENT_ID
    assert stored.vulnerability["severity"] == "high"
    assert stored.vulnerability["confidence"] == "unknown"
    assert (stored.namespace, stored.kind, stored.name) == ("shop", "Deployment", "web")
    assert (stored.package_name, stored.identifier) == ("openssl", "CVE-2024-0001")


def _expired() -> dict[str, str]:
    now = int(time.time())
    return auth(kas=signed(iat=now - 90, nbf=now - 95, exp=now - 60))


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        (lambda: {"Authorization": f"Bearer {AGENT_TOKEN}"}, "no JWT"),
        (lambda: auth(kas=signed(secret=b"another-secret-of-thirty-two-by!")), "another key"),
        (lambda: auth(kas=signed(iss="someone-else")), "wrong issuer"),
        (lambda: auth(kas=signed(aud="gitlab-kas")), "wrong audience"),
        (_expired, "expired"),
        (lambda: auth(kas=signed(nbf=int(time.time()) + 60)), "not yet valid"),
        (lambda: auth(kas=signed(exp=None)), "no exp claim"),
        (lambda: auth(kas=signed(algorithm="HS512")), "not HS256"),
        (lambda: auth(kas="not-a-jwt"), "garbage"),
        (lambda: {"Gitlab-Kas-Api-Request": kas_jwt(KAS_SECRET)}, "no agent token"),
        (lambda: auth(token="glagent-unknown"), "unknown agent token"),
        (lambda: {**auth(), "Authorization": f"Basic {AGENT_TOKEN}"}, "not a bearer token"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_requests_without_valid_headers_are_unauthorized(
    gitlab: GitLabEmulator,
    api: httpx.Client,
    headers: Callable[[], dict[str, str]],
    why: str,
) -> None:
    for response in (
        put(api, BODY, headers()),
        api.post("/scan_result", json={"uuids": []}, headers=headers()),
        api.get("/policies_configuration", headers=headers()),
    ):
        assert response.status_code == 401, (why, response.request.method, response.text)
        assert response.json() == {"message": "401 Unauthorized"}
    assert gitlab.findings() == []


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"name": None}, "vulnerability[name] is missing"),
        ({"severity": None}, "vulnerability[severity] is missing"),
        ({"severity": "severe"}, "vulnerability[severity] does not have a valid value"),
        ({"confidence": "sure"}, "vulnerability[confidence] does not have a valid value"),
        ({"identifiers": None}, "vulnerability[identifiers] is missing"),
        ({"identifiers": []}, "vulnerability[identifiers] is empty"),
        ({"identifiers": [{"name": "CVE-1"}]}, "vulnerability[identifiers][0][type] is missing"),
        ({"location__image": None}, "vulnerability[location][image] is missing"),
        (
            {"location__dependency__package__name": None},
            "vulnerability[location][dependency][package][name] is missing",
        ),
        (
            {"location__kubernetes_resource__container_name": None},
            "vulnerability[location][kubernetes_resource][container_name] is missing",
        ),
        (
            {"location__kubernetes_resource__agent_id": int(AGENT_ID)},
            "vulnerability[location][kubernetes_resource][agent_id] is invalid",
        ),
        (
            {"location__kubernetes_resource__agent_id": "7"},
            "vulnerability[location][kubernetes_resource][agent_id] is not the agent of the token",
        ),
        ({"links": [{"name": "no url"}]}, "vulnerability[links][0][url] is missing"),
        ({"location__operating_system": {"family": "debian"}}, "is invalid"),
    ],
)
def test_put_body_is_schema_checked(
    gitlab: GitLabEmulator, api: httpx.Client, changes: dict[str, Any], error: str
) -> None:
    response = put(api, with_changes(**changes))
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert gitlab.findings() == []


def test_put_without_scanner_is_refused(gitlab: GitLabEmulator, api: httpx.Client) -> None:
    body = copy.deepcopy(BODY)
    del body["scanner"]["vendor"]
    response = put(api, body)
    assert response.status_code == 400
    assert response.json()["error"] == "scanner[vendor] is missing"


def test_fingerprint_ignores_image_version_and_container(
    gitlab: GitLabEmulator, api: httpx.Client
) -> None:
    first = put(api, BODY).json()["uuid"]
    moved = with_changes(
        location__image="registry.example/app:2",
        location__dependency__version="3.0.2",
        location__kubernetes_resource__container_name="sidecar",
    )
    assert put(api, moved).json()["uuid"] == first
    assert put(api, with_changes(location__kubernetes_resource__name="api")).json()["uuid"] != first
    assert (
        put(api, with_changes(location__dependency__package__name="zlib")).json()["uuid"] != first
    )
    other_cve = [{"type": "cve", "name": "CVE-2024-0002", "value": "CVE-2024-0002"}]
    assert put(api, with_changes(identifiers=other_cve)).json()["uuid"] != first
    assert len(gitlab.findings()) == 4
    [first_stored] = [f for f in gitlab.findings() if f.uuid == first]
    assert first_stored.uploads == 2
    assert (
        first_stored.vulnerability["location"]["kubernetes_resource"]["container_name"] == "sidecar"
    )


def test_scan_result_resolves_only_unlisted_findings_of_the_calling_agent(
    gitlab: GitLabEmulator,
    api: httpx.Client,
) -> None:
    gitlab.add_agent("glagent-other", "2001")
    keep = put(api, BODY).json()["uuid"]
    drop = put(api, with_changes(location__dependency__package__name="zlib")).json()["uuid"]
    other_body = with_changes(location__kubernetes_resource__agent_id="2001")
    other = put(api, other_body, auth(token="glagent-other")).json()["uuid"]

    response = scan_result(api, [keep])

    assert response.status_code == 200
    states = {f.uuid: f.state for f in gitlab.findings()}
    assert states == {keep: "detected", drop: "resolved", other: "detected"}
    # Detected again by a later PUT.
    assert put(api, with_changes(location__dependency__package__name="zlib")).json()["uuid"] == drop
    assert {f.uuid: f.state for f in gitlab.findings()}[drop] == "detected"


def test_scan_result_with_no_uuids_resolves_everything_of_the_agent(
    gitlab: GitLabEmulator, api: httpx.Client
) -> None:
    put(api, BODY)
    assert scan_result(api, []).status_code == 200
    assert [f.state for f in gitlab.findings()] == ["resolved"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "uuids is missing"),
        ({"uuids": "abc"}, "uuids is invalid"),
        ({"uuids": [1]}, "uuids is invalid"),
    ],
)
def test_scan_result_body_is_checked(
    gitlab: GitLabEmulator, api: httpx.Client, body: Any, error: str
) -> None:
    response = api.post("/scan_result", json=body, headers=auth())
    assert (response.status_code, response.json()) == (400, {"error": error})


def test_policies_configuration_402_without_licence_else_configured(
    gitlab: GitLabEmulator, api: httpx.Client
) -> None:
    response = api.get("/policies_configuration", headers=auth())
    assert (response.status_code, response.json()) == (402, {"message": "Payment Required"})
    gitlab.policies = [{"cadence": "0 2 * * *", "namespaces": ["shop"]}]
    response = api.get("/policies_configuration", headers=auth())
    assert response.json() == {"configurations": [{"cadence": "0 2 * * *", "namespaces": ["shop"]}]}


def test_unknown_route_and_wrong_method(gitlab: GitLabEmulator, api: httpx.Client) -> None:
    assert api.get("/nope", headers=auth()).status_code == 404
    response = api.get("/scan_result", headers=auth())
    assert (response.status_code, response.headers["allow"]) == (405, "POST")


def test_faults_answer_in_order_then_stop(gitlab: GitLabEmulator, api: httpx.Client) -> None:
    gitlab.fail_next(2, 503, method="PUT", retry_after="7")
    gitlab.fail_next(1, 429, method="POST")
    first, second, third = (put(api, BODY) for _ in range(3))
    assert [r.status_code for r in (first, second, third)] == [503, 503, 200]
    assert first.headers["retry-after"] == "7"
    assert scan_result(api, []).status_code == 429
    assert scan_result(api, []).status_code == 200
    assert [(r.method, r.status, r.fault) for r in gitlab.requests] == [
        ("PUT", 503, "status 503"),
        ("PUT", 503, "status 503"),
        ("PUT", 200, None),
        ("POST", 429, "status 429"),
        ("POST", 200, None),
    ]


def test_disconnect_and_delay_faults(gitlab: GitLabEmulator, api: httpx.Client) -> None:
    gitlab.disconnect_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        put(api, BODY)
    gitlab.delay_next(1, 0.3)
    started = time.monotonic()
    assert put(api, BODY).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_request_log_keeps_headers_and_parsed_body(
    gitlab: GitLabEmulator, api: httpx.Client
) -> None:
    put(api, BODY)
    [request] = gitlab.requests
    assert request.path.rstrip("/") == BASE_PATH
    assert request.body == BODY
    assert request.headers["authorization"] == f"Bearer {AGENT_TOKEN}"
    assert gitlab.kas_problem(request.headers["gitlab-kas-api-request"]) is None


def test_stop_returns_promptly_with_a_request_held_and_idle_connections() -> None:
    emulator = GitLabEmulator({AGENT_TOKEN: AGENT_ID}, kas_secret=KAS_SECRET).start()
    try:
        with httpx.Client() as client:  # a keep-alive connection stays open
            client.put(emulator.url + BASE_PATH, json=BODY, headers=auth())
            started = time.monotonic()
            emulator.stop()
            assert time.monotonic() - started < 2
    finally:
        emulator.stop()

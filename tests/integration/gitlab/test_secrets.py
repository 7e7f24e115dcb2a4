"""The agent token and the KAS shared secret never leave the sink, and their files are read
with clear errors. Both are canaries: any output that contains them fails the test."""

from __future__ import annotations

import base64
import logging
import traceback
from pathlib import Path

import pytest
from gitlab_support import (
    AGENT_ID,
    AGENT_TOKEN,
    FAST_RETRY,
    KAS_SECRET,
    container,
    cycle,
    finding,
    workload,
)
from pydantic import SecretStr

from ocscan.report.gitlab_api import (
    GitLabAgentSink,
    GitLabApiError,
    GitLabConfigError,
    read_agent_token,
    read_kas_secret,
)
from ocscan.sandbox.gitlab import GitLabEmulator

CANARIES = (
    AGENT_TOKEN,
    KAS_SECRET.decode(),
    base64.b64encode(KAS_SECRET).decode(),
)

REPORT = cycle(
    workload("shop", "web", container("app", finding("CVE-2024-0001", "openssl"))),
    workload("shop", "db", container("db", finding("CVE-2024-0002", "zlib"))),
)


def assert_no_canary(text: str, where: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"a secret appears in {where}"


def error_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


async def test_no_secret_in_logs_results_or_errors(
    gitlab: GitLabEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    token_file, secret_file = tmp_path / "token", tmp_path / "kas-secret"
    token_file.write_text(AGENT_TOKEN + "\n")
    secret_file.write_text(gitlab.kas_secret_file_content)
    outputs: list[tuple[str, str]] = []

    # Retries, a proxy that echoes the Authorization header, a persistent failure.
    gitlab.fail_next(1, 503, method="PUT", retry_after="0")
    gitlab.disconnect_next(1, method="PUT")
    gitlab.fail_next(1, 400, method="PUT", message=f"rejected header: Bearer {AGENT_TOKEN}")
    async with GitLabAgentSink.from_files(
        gitlab.url, AGENT_ID, token_file=token_file, kas_secret_file=secret_file, retry=FAST_RETRY
    ) as sink:
        outputs.append(("the sink's repr", repr(sink) + str(sink)))
        first = await sink.deliver(REPORT)
        second = await sink.deliver(cycle(namespaces={"shop": False}))
        gitlab.fail_next(1000, 500, method="POST")
        third = await sink.deliver(REPORT)
    assert [r.resolution for r in (first, second, third)] == ["skipped", "skipped", "failed"]
    assert "**********" in first.failures[0].message  # the echoed token, redacted
    for result in (first, second, third):
        outputs.append(("a result", result.model_dump_json() + repr(result)))

    # Refused: another KAS secret, then an unreachable GitLab.
    async with GitLabAgentSink(gitlab.url, AGENT_ID, SecretStr(AGENT_TOKEN), b"0" * 32) as refused:
        with pytest.raises(GitLabApiError) as caught:
            await refused.deliver(REPORT)
    outputs.append(("a 401 error", error_text(caught.value)))
    url = gitlab.url
    gitlab.stop()
    async with GitLabAgentSink(
        url, AGENT_ID, SecretStr(AGENT_TOKEN), KAS_SECRET, retry=FAST_RETRY
    ) as gone:
        with pytest.raises(GitLabApiError) as caught:
            await gone.resolve([])
    outputs.append(("a connection error", error_text(caught.value)))

    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "retrying" in logged and "left open" in logged  # the logs were captured
    outputs.append(("the logs", logged))
    jwts = {r.headers["gitlab-kas-api-request"] for r in gitlab.requests}
    for where, text in outputs:
        assert_no_canary(text, where)
        assert not any(token in text for token in jwts), f"a signed JWT appears in {where}"


def test_agent_token_file_is_read_and_redacted(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {AGENT_TOKEN}\n")
    token = read_agent_token(path)
    assert token.get_secret_value() == AGENT_TOKEN
    assert_no_canary(repr(token) + str(token), "the token's repr")


def test_kas_secret_file_is_base64_decoded(tmp_path: Path) -> None:
    path = tmp_path / "kas"
    path.write_text(base64.b64encode(KAS_SECRET).decode() + "\n")
    assert read_kas_secret(path) == KAS_SECRET


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (f"{AGENT_TOKEN}!!", "is not valid base64"),
        (base64.b64encode(KAS_SECRET).decode()[:-2], "is not valid base64"),
        ("\n", "is empty"),
    ],
    ids=["not base64", "truncated", "empty"],
)
def test_malformed_kas_secret_file_is_a_clear_error(
    tmp_path: Path, content: str, reason: str
) -> None:
    path = tmp_path / "kas"
    path.write_text(content)
    with pytest.raises(GitLabConfigError) as caught:
        read_kas_secret(path)
    message = str(caught.value)
    assert str(path) in message and reason in message
    assert_no_canary(error_text(caught.value), "the error")


def test_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GitLabConfigError, match=r"cannot read the agent token file .*: No such"):
        read_agent_token(tmp_path / "absent")
    with pytest.raises(GitLabConfigError, match=r"cannot read the KAS shared secret file"):
        read_kas_secret(tmp_path)  # a directory
    (tmp_path / "empty").write_text("")
    with pytest.raises(GitLabConfigError, match=r"agent token file .*empty is empty"):
        read_agent_token(tmp_path / "empty")

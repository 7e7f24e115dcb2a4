"""Classification of failed scans, on stderr captured from real Trivy 0.76 runs.

The files in trivy_stderr/ were recorded on this machine against docker-registry 2.8 and a
Trivy server; the integration tests check the same cases live.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocscan.errors import OcscanError
from ocscan.scan.failure import (
    MESSAGE_LIMIT,
    FailureKind,
    ScanFailed,
    ScanFailure,
    classify_failure,
    redact,
)

SAMPLES = Path(__file__).parent / "trivy_stderr"


def sample(name: str) -> str:
    return (SAMPLES / f"{name}.txt").read_text()


@pytest.mark.parametrize(
    ("name", "kind", "words"),
    [
        ("auth_no_credentials", "auth", "UNAUTHORIZED: authentication required"),
        ("auth_wrong_password", "auth", "UNAUTHORIZED: authentication required"),
        # Without credentials the registry does not say whether the tag exists.
        ("auth_missing_tag_anonymous", "auth", "UNAUTHORIZED: authentication required"),
        # MANIFEST_UNKNOWN from the credentialed try, UNAUTHORIZED from the anonymous retry.
        ("not_found_tag_with_credentials", "not_found", "MANIFEST_UNKNOWN: manifest unknown"),
        ("unreachable_closed_port", "unreachable", "connect: connection refused"),
        # The plain-HTTP fallback's 400 must not hide the certificate problem.
        ("tls_unknown_authority", "tls", "x509: certificate signed by unknown authority"),
        ("timeout_dial", "timeout", "i/o timeout"),
        ("timeout_server_rpc", "timeout", "context deadline exceeded"),
        # A refused connection to the Trivy server is not an unreachable registry.
        ("scanner_server_unreachable", "scanner_error", "127.0.0.1:1/twirp"),
        ("scanner_invalid_token", "scanner_error", "twirp error unauthenticated: invalid token"),
        ("scanner_no_database", "scanner_error", "--skip-db-update cannot be specified"),
    ],
)
def test_real_trivy_errors_are_classified_with_their_own_words(
    name: str, kind: str, words: str
) -> None:
    failure = classify_failure(1, sample(name))

    assert failure.kind == FailureKind(kind)
    assert words in failure.message
    assert "\n" not in failure.message
    assert not failure.message.startswith("run error")
    assert len(failure.message) <= MESSAGE_LIMIT


def test_not_found_message_is_the_manifest_error_not_the_retry() -> None:
    message = classify_failure(1, sample("not_found_tag_with_credentials")).message

    assert message == (
        "GET http://127.0.0.1:5501/v2/team/app/manifests/9.9: "
        "MANIFEST_UNKNOWN: manifest unknown; map[Tag:9.9]"
    )


def test_tls_message_is_the_https_attempt_alone() -> None:
    message = classify_failure(1, sample("tls_unknown_authority")).message

    assert message == (
        'Get "https://127.0.0.1:5502/v2/": tls: failed to verify certificate: '
        "x509: certificate signed by unknown authority"
    )


def test_timeout_message_says_so_and_names_the_cause() -> None:
    message = classify_failure(1, sample("timeout_dial")).message

    assert message.startswith("the scan did not finish within its time limit: ")
    assert "dial tcp 127.0.0.1:5502: i/o timeout" in message


def test_specificity_does_not_depend_on_order() -> None:
    lines = sample("not_found_tag_with_credentials").splitlines()
    bullets = [line for line in lines if line.lstrip().startswith("*")]
    swapped = "\n".join([lines[0], bullets[1], bullets[0]])

    assert classify_failure(1, swapped).kind is FailureKind.NOT_FOUND


def test_warnings_alone_do_not_classify() -> None:
    output = "2026-01-01T00:00:00Z\tWARN\tregistry said UNAUTHORIZED once, retrying\n"

    failure = classify_failure(1, output)

    assert failure.kind is FailureKind.SCANNER_ERROR
    assert failure.message == "trivy exited with status 1 and reported no error"


@pytest.mark.parametrize(
    ("exit_code", "message"),
    [
        (1, "trivy exited with status 1 and reported no error"),
        (-9, "trivy was killed by signal 9"),
    ],
)
def test_silent_failures_are_scanner_errors(exit_code: int, message: str) -> None:
    assert classify_failure(exit_code, "") == ScanFailure(
        kind=FailureKind.SCANNER_ERROR, message=message
    )


def test_unknown_fatal_error_is_a_scanner_error_with_trivy_words() -> None:
    output = "2026-01-01T00:00:00Z\tFATAL\tFatal error\trun error: something new broke\n"

    assert classify_failure(1, output) == ScanFailure(
        kind=FailureKind.SCANNER_ERROR, message="something new broke"
    )


def test_long_messages_are_trimmed() -> None:
    output = f"2026-01-01T00:00:00Z\tFATAL\tFatal error\trun error: {'x' * 5000}\n"

    message = classify_failure(1, output).message

    assert len(message) == MESSAGE_LIMIT
    assert message.endswith("…")


def test_username_and_password_are_scrubbed() -> None:
    output = sample("auth_wrong_password").replace("team/app", "alice:canary-Pw/app")

    failure = classify_failure(1, output, secrets=["alice", "canary-Pw"])

    assert failure.kind is FailureKind.AUTH
    assert "canary-Pw" not in failure.message
    assert "alice" not in failure.message
    assert "***:***/app" in failure.message


def test_scan_failed_is_an_ocscan_error_naming_image_and_kind() -> None:
    error = ScanFailed("reg/app:1", ScanFailure(kind=FailureKind.AUTH, message="DENIED: no"))

    assert isinstance(error, OcscanError)
    assert str(error) == "scan of reg/app:1 failed (auth): DENIED: no"
    assert error.failure.kind is FailureKind.AUTH


def test_failure_kinds_cover_the_whole_product() -> None:
    assert {kind.value for kind in FailureKind} == {
        "auth",
        "not_found",
        "unreachable",
        "tls",
        "timeout",
        "scanner_error",
        "oom",
        "report_too_large",
        "secret_missing",
        "secret_invalid",
    }


def test_redaction_completes_occurrences_it_creates() -> None:
    # Replacing "a*" in "aa**" leaves "a****", which holds "a*" again.
    assert "a*" not in redact("aa**", ["a*"])


def test_redaction_covers_a_secret_with_its_whitespace_collapsed() -> None:
    assert redact("user a b here", ["a  b"]) == "user *** here"


secrets_ = st.text(min_size=1, max_size=12).filter(lambda s: s.strip("*") != "")


@given(prefix=st.text(max_size=40), suffix=st.text(max_size=40), secret=secrets_)
def test_redact_never_leaves_the_secret(prefix: str, suffix: str, secret: str) -> None:
    assert secret not in redact(prefix + secret + suffix, [secret])


@given(prefix=st.text(max_size=600), secret=secrets_, username=secrets_)
def test_classified_message_never_carries_a_secret(prefix: str, secret: str, username: str) -> None:
    output = (
        f"2026-01-01T00:00:00Z\tFATAL\tFatal error\trun error: {prefix}{username}:{secret}:\n"
        f"\t* remote error: GET http://r/v2/: UNAUTHORIZED: {secret} {username}\n"
    )

    message = classify_failure(1, output, secrets=[secret, username]).message

    for value in (secret, username):
        assert value not in message
        assert " ".join(value.split()) not in message or not value.split()


def test_output_that_is_not_trivys_keeps_its_last_words() -> None:
    # The shell of a scanner pod could not start trivy at all.
    failure = classify_failure(127, "sh: 1: trivy: not found\n")

    assert failure.kind is FailureKind.SCANNER_ERROR
    assert failure.message == "exit status 127: sh: 1: trivy: not found"

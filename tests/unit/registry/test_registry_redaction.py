"""A canary password must never show up: not in reprs, dumps, logs or parse errors."""

from __future__ import annotations

import base64
import json
import logging
import traceback
from typing import Any

import pytest

from ocscan.errors import MalformedSecretError
from ocscan.registry.credential import RegistryCredential
from ocscan.registry.dockerconfig import entries_from_secret, parse_docker_config
from ocscan.registry.keyring import Keyring
from ocscan.registry.pullsecrets import resolve_pull_credentials

CANARY_USER = "canary-user-7c1f"
CANARY = "canary-pw-3f9a1d"
CANARY_AUTH = base64.b64encode(f"{CANARY_USER}:{CANARY}".encode()).decode()
FORBIDDEN = (CANARY, CANARY_USER, CANARY_AUTH, CANARY_AUTH.rstrip("="))


def assert_clean(text: str) -> None:
    for needle in FORBIDDEN:
        assert needle not in text


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def valid_objects() -> list[Any]:
    document = {"auths": {"reg.io": {"auth": CANARY_AUTH}, "other.io": {"password": CANARY}}}
    entries = parse_docker_config(json.dumps(document), source="ns/regcred")
    secret = {
        "metadata": {"name": "regcred", "namespace": "ns"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(json.dumps(document))},
    }
    matches = Keyring([("ns/regcred", entries)]).lookup("reg.io/app")
    resolved = resolve_pull_credentials("reg.io/app", ["regcred"], {"regcred": secret}, "ns")
    assert matches[0].credential.reveal() == (CANARY_USER, CANARY)  # the canary is in there
    return [entries[0].credential, entries[0], entries[1], matches[0], resolved]


def test_canary_is_absent_from_repr_str_format_and_dumps() -> None:
    for obj in valid_objects():
        assert_clean(repr(obj))
        assert_clean(str(obj))
        assert_clean(f"{obj} {obj!r}")
        assert_clean(json.dumps(obj.model_dump(mode="json")))
        assert_clean(obj.model_dump_json())
        assert_clean(repr(obj.model_dump()))


def test_canary_is_absent_from_logs(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("ocscan.test")
    with caplog.at_level(logging.DEBUG, logger="ocscan.test"):
        for obj in valid_objects():
            logger.info("object %s", obj)
            logger.debug("object %r", obj)
            logger.warning("as args", extra={"credential_object": obj})
            try:
                raise RuntimeError(obj)
            except RuntimeError:
                logger.exception("failed with %s", obj)
    assert caplog.records
    assert_clean(caplog.text)
    for record in caplog.records:
        assert_clean(record.getMessage())
        assert_clean(repr(record.__dict__))


NOT_UTF8_AUTH = b64(b"\xff" + f"{CANARY_USER}:{CANARY}".encode())

# Documents that hold the canary and are malformed in various ways.
MALFORMED: list[bytes | str] = [
    # JSON syntax error right after the password: json's own message would quote it.
    f'{{"auths": {{"reg.io": {{"password": "{CANARY}", }}}}}}',
    f'{{"auths": {{"reg.io": {{"password": "{CANARY}"}}}}',
    f'{{"auths": {{"reg.io": {{"password": "{CANARY}\x01"}}}}}}',
    # The password in an auth that is not base64, or lacks the colon.
    f'{{"auths": {{"reg.io": {{"auth": "{CANARY}!"}}}}}}',
    f'{{"auths": {{"reg.io": {{"auth": "{b64(CANARY)}"}}}}}}',
    f'{{"auths": {{"reg.io": {{"auth": "{NOT_UTF8_AUTH}"}}}}}}',
    # Wrong types and duplicates around a valid password.
    f'{{"auths": {{"reg.io": {{"password": "{CANARY}", "username": 5}}}}}}',
    f'{{"auths": {{"reg.io": {{"password": "{CANARY}", "password": "{CANARY}"}}}}}}',
    f'{{"auths": {{"reg.io": {{"auth": "{CANARY_AUTH}"}}, "reg.io": {{}}}}}}',
    f'{{"auths": {{"reg.io": {{"auth": "{CANARY_AUTH}"}}, "bad key": {{}}}}}}',
    # The password inside a key, as user information.
    f'{{"auths": {{"https://{CANARY_USER}:{CANARY}@reg.io": {{}}}}}}',
    # Not UTF-8, with the password in it.
    b'{"auths": {"reg.io": {"password": "' + CANARY.encode() + b'\xff"}}}',
    f'[{{"password": "{CANARY}"}}]',
]


def assert_exception_clean(error: BaseException) -> None:
    assert error.__cause__ is None
    assert error.__context__ is None  # nothing chained that could carry the document
    assert_clean(str(error))
    assert_clean(repr(error))
    assert_clean(repr(error.args))
    assert_clean("".join(traceback.format_exception(error)))
    assert_clean(repr(vars(error)))


@pytest.mark.parametrize("document", MALFORMED)
def test_parse_errors_never_carry_the_canary(document: bytes | str) -> None:
    with pytest.raises(MalformedSecretError) as caught:
        parse_docker_config(document, source="ns/regcred", kind="dockerconfigjson")
    assert_exception_clean(caught.value)


@pytest.mark.parametrize("document", MALFORMED)
def test_secret_errors_never_carry_the_canary(document: bytes | str) -> None:
    raw = document.encode() if isinstance(document, str) else document
    secret = {
        "metadata": {"name": "regcred", "namespace": "ns"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(raw)},
    }
    with pytest.raises(MalformedSecretError) as caught:
        entries_from_secret(secret)
    assert_exception_clean(caught.value)
    resolved = resolve_pull_credentials("reg.io/app", ["regcred"], {"regcred": secret}, "ns")
    assert resolved.invalid and not resolved.matches
    assert_clean(repr(resolved))
    assert_clean(resolved.model_dump_json())


def test_wrong_type_secret_error_never_carries_the_canary() -> None:
    document = json.dumps({"auths": {"reg.io": {"auth": CANARY_AUTH}}})
    for secret_type, key in [
        ("Opaque", ".dockerconfigjson"),
        ("kubernetes.io/dockercfg", ".dockerconfigjson"),
    ]:
        secret = {"metadata": {"name": "s", "namespace": "ns"}, "type": secret_type}
        secret["data"] = {key: b64(document)}
        with pytest.raises(MalformedSecretError) as caught:
            entries_from_secret(secret)
        assert_exception_clean(caught.value)


def test_invalid_base64_secret_data_error_never_carries_the_canary() -> None:
    secret = {
        "metadata": {"name": "s", "namespace": "ns"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": f"{CANARY}!!"},
    }
    with pytest.raises(MalformedSecretError) as caught:
        entries_from_secret(secret)
    assert_exception_clean(caught.value)


def test_the_canary_test_can_fail() -> None:
    """The checks above would notice a leak: the credential does hold the canary."""
    credential = RegistryCredential.of(CANARY_USER, CANARY)
    with pytest.raises(AssertionError):
        assert_clean(repr(credential.reveal()))

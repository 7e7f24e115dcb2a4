from __future__ import annotations

from pathlib import Path

import pytest
from lightkube.core.selector import build_selector

from ocscan.config import ConfigError, load_config, parse_config
from ocscan.kube.selector import InvalidSelectorError, parse_label_selector


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("app=web", "app=web"),
        ("app==web,tier!=db", "app=web,tier!=db"),
        ("env in (prod, staging),!legacy", "env in (prod,staging),!legacy"),
        ("team notin (a),owner", "team notin (a),owner"),
        ("app.kubernetes.io/name=x", "app.kubernetes.io/name=x"),
    ],
)
def test_label_selectors_reach_the_api_unchanged(text: str, encoded: str) -> None:
    assert build_selector(parse_label_selector(text)) == encoded


@pytest.mark.parametrize("text", ["", "app=web,", "a b", "x in y"])
def test_bad_selectors_name_the_selector(text: str) -> None:
    with pytest.raises(InvalidSelectorError, match="invalid label selector"):
        parse_label_selector(text)


def test_defaults_when_no_file() -> None:
    config = load_config(None)
    assert config.scanner.concurrency == 10
    assert config.targets.namespaces == []


def test_unknown_and_bad_keys_are_named_by_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"scanner": {"concurency": 3, "timeout_seconds": "soon"}, "extra": 1})
    message = str(caught.value)
    assert "scanner.concurency" in message
    assert "scanner.timeout_seconds" in message
    assert "extra" in message


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ocscan.yaml"
    path.write_text("scanner: [unclosed\n")
    with pytest.raises(ConfigError, match=r"ocscan\.yaml: not valid YAML"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "ocscan.yaml"
    path.write_text("targets:\n  namespaces: [shop]\nscanner:\n  concurrency: 4\n")
    config = load_config(path)
    assert config.targets.namespaces == ["shop"]
    assert config.scanner.concurrency == 4


def test_default_requests_above_a_limit_set_alone_are_lowered_to_it() -> None:
    # Kubernetes refuses a pod whose request exceeds its limit; the user wrote only limits.
    scanner = parse_config({"scanner": {"limits": {"memory": "24Mi"}}}).scanner
    assert scanner.limits == {"memory": "24Mi"}
    assert scanner.requests == {"cpu": "100m", "memory": "24Mi", "ephemeral-storage": "512Mi"}


def test_requests_the_user_wrote_above_their_limits_are_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"scanner": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1024Mi"}}})
    message = str(caught.value)
    assert "scanner.limits" in message
    assert "the memory request (2Gi) is above its limit (1024Mi)" in message


@pytest.mark.parametrize("field", ["requests", "limits"])
def test_malformed_quantities_are_named(field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"scanner": {field: {"memory": "1GB"}}})
    assert f"scanner.{field}" in str(caught.value)
    assert "memory: '1GB' is not a quantity" in str(caught.value)

"""One sandbox for the RBAC tests: the sample workloads, the VulnerabilityReport CRD, and the
ServiceAccount, Roles and bindings exactly as ``kubectl kustomize deploy/`` renders them.

RBAC is enforced for the agent's service account only; the tests keep an admin client to
set the stage and to check what the agent did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rbac_support import (
    AGENT_ACCOUNT,
    AGENT_NAMESPACE,
    AGENT_USER,
    RBAC_KINDS,
    apply,
    ocscan_scan,
    render_deploy,
    statuses_of,
)

from ocscan.sandbox.stack import Sandbox
from sandbox_session import running_sandbox


@pytest.fixture(scope="session")
def rendered() -> list[dict[str, Any]]:
    """Every object of ``kubectl kustomize deploy/``."""
    return render_deploy()


@pytest.fixture(scope="session")
def roles(rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rendered ClusterRole and Role, by kind."""
    found = {o["kind"]: o for o in rendered if o["kind"] in ("ClusterRole", "Role")}
    assert set(found) == {"ClusterRole", "Role"}
    return found


@pytest.fixture(scope="session")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, rendered: list[dict[str, Any]]
) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("rbac-sandbox")) as stack:
        assert stack.kube is not None
        for obj in rendered:
            if obj["kind"] == "CustomResourceDefinition":
                apply(stack, obj)  # the sandbox may install it already: replace, same thing
        for obj in rendered:
            if obj["kind"] in RBAC_KINDS:
                apply(stack, obj)
        stack.kube.rbac.enable(users=[AGENT_USER])
        yield stack


@pytest.fixture(scope="session")
def agent_kubeconfig(sandbox: Sandbox) -> Path:
    """A kubeconfig holding a token of the ocscan-agent service account."""
    assert sandbox.kube is not None
    token = sandbox.kube.auth.issue_service_account(AGENT_NAMESPACE, AGENT_ACCOUNT)
    return sandbox.kube.write_kubeconfig(sandbox.directory / "agent-kubeconfig", token=token)


@pytest.fixture(scope="session")
def scan_config(sandbox: Sandbox) -> Path:
    """The sandbox's ocscan configuration, delivering VulnerabilityReports."""
    document = sandbox.ocscan_config()
    document["sinks"] = {"vulnerability_reports": True}
    path = sandbox.directory / "ocscan-rbac.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="session")
def admin_statuses(sandbox: Sandbox, scan_config: Path) -> dict[tuple[str, str], str]:
    """The statuses of a cycle run as cluster admin (it also writes the first reports)."""
    run = ocscan_scan(sandbox.kubeconfig, scan_config)
    assert run.code == 0, run.stderr
    return statuses_of(run)

"""Building the lightkube client from a kubeconfig file, the environment or the pod's account."""

from __future__ import annotations

from pathlib import Path

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ConfigError as LightkubeConfigError

from ocscan.errors import OcscanError


class ClusterUnreachableError(OcscanError):
    """The Kubernetes API cannot be reached or refused ocscan; the message says which."""


def make_client(
    kubeconfig: Path | None = None, context: str | None = None, *, timeout: float = 30.0
) -> AsyncClient:
    """An async client for ``kubeconfig`` (else $KUBECONFIG, ~/.kube/config, in-cluster)."""
    try:
        if kubeconfig is not None:
            config = KubeConfig.from_file(kubeconfig)
        else:
            config = KubeConfig.from_env()
        single = config.get(context_name=context)
        if single is None:
            raise LightkubeConfigError(f"context {context!r} not found")
        return AsyncClient(config=single, timeout=httpx2.Timeout(timeout), field_manager="ocscan")
    except (LightkubeConfigError, OSError, KeyError, ValueError) as error:
        source = kubeconfig or "the environment"
        raise ClusterUnreachableError(f"cannot load kubeconfig from {source}: {error}") from None

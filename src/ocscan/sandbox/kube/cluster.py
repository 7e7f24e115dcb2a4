"""The emulator's control plane and nodes over one object store: admission, controllers and
the kubelet, started and stopped together.

    with KubeEmulator() as kube, SandboxCluster(kube.store, KubeletConfig(...)) as cluster:
        ...  # Deployments get ReplicaSets and Running pods; scanner pods run for real
"""

from __future__ import annotations

from typing import Self

from ocscan.sandbox.kube.admission import ServiceAccountAdmission
from ocscan.sandbox.kube.controllers import Controllers
from ocscan.sandbox.kube.jsondata import JsonObject
from ocscan.sandbox.kube.kubelet import Kubelet, KubeletConfig
from ocscan.sandbox.kube.store import ObjectStore
from ocscan.sandbox.lifecycle import StartsOnEnter


class SandboxCluster(StartsOnEnter):
    """Admission plugins, controllers and the kubelet of one emulated cluster.

    ``mount_token``: the ServiceAccount admission mounts the token volume like a real
    cluster does. ``root_ca``: the PEM published as ``kube-root-ca.crt`` in every namespace.
    """

    def __init__(
        self,
        store: ObjectStore,
        kubelet: KubeletConfig | None = None,
        *,
        mount_token: bool = True,
        root_ca: str = "",
    ) -> None:
        self.store = store
        self.admission = ServiceAccountAdmission(store, mount_token=mount_token)
        self.controllers = Controllers(store, root_ca=root_ca)
        self.kubelet = Kubelet(store, kubelet)
        self._started = False

    def start(self) -> Self:
        if not self._started:
            self._started = True
            self.admission.install()
            self.controllers.start()
            self.kubelet.start()
        return self

    def stop(self) -> None:
        """Stop the controllers, then the kubelet (which kills every container process)."""
        if self._started:
            self._started = False
            self.controllers.stop()
            self.kubelet.stop()

    def trigger_cronjob(self, namespace: str, name: str, job_name: str | None = None) -> JsonObject:
        """Create a Job from a CronJob now (see :meth:`Controllers.trigger_cronjob`)."""
        return self.controllers.trigger_cronjob(namespace, name, job_name)

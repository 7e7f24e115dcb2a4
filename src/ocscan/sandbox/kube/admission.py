"""The ServiceAccount admission plugin, as the API server runs it on every pod create.

For a new pod it:

* sets ``spec.serviceAccountName`` to ``default`` when empty;
* rejects the pod with 403 Forbidden while that service account does not exist
  (``pods "web-7d9c-" is forbidden: error looking up service account ns/sa: serviceaccount
  "sa" not found``; the generateName stands in for the name not yet generated);
* copies the service account's ``imagePullSecrets`` into the pod only when the pod lists
  none (never merged);
* optionally mounts the service-account token volume (``kube-api-access-xxxxx``) unless
  ``automountServiceAccountToken`` of the pod, or else of the service account, is false.
"""

from __future__ import annotations

import secrets as _random

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.kube.jsondata import JsonObject
from ocscan.sandbox.kube.store import AdmissionRequest, ObjectStore

DEFAULT_SERVICE_ACCOUNT = "default"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class ServiceAccountAdmission:
    """Call :meth:`install` to run the plugin on the store's pod creates."""

    def __init__(self, store: ObjectStore, mount_token: bool = False) -> None:
        self.store = store
        self.mount_token = mount_token

    def install(self) -> None:
        self.store.add_admission(r.PODS, self)

    def __call__(self, request: AdmissionRequest) -> None:
        if request.operation != "CREATE":
            return
        pod = request.object
        meta = pod.get("metadata") or {}
        if (meta.get("annotations") or {}).get("kubernetes.io/config.mirror"):
            return  # mirror pods are left alone
        spec = pod.setdefault("spec", {})
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
        namespace = request.namespace or meta.get("namespace") or ""
        account_name = spec["serviceAccountName"]
        try:
            account = self.store.get(r.SERVICE_ACCOUNTS, namespace, account_name)
        except ApiError as error:
            if error.code != 404:
                raise
            name = meta.get("name") or meta.get("generateName") or "Unknown"
            raise ApiError.forbidden(
                r.PODS,
                name,
                f"error looking up service account {namespace}/{account_name}: "
                f'serviceaccount "{account_name}" not found',
            ) from None
        if self.mount_token and _automount(account, spec):
            _mount_token(spec)
        if not spec.get("imagePullSecrets"):
            copied = [
                {"name": ref.get("name", "")} for ref in account.get("imagePullSecrets") or []
            ]
            if copied:
                spec["imagePullSecrets"] = copied


def _automount(account: JsonObject, spec: JsonObject) -> bool:
    """The pod's ``automountServiceAccountToken`` wins over the service account's."""
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    if account.get("automountServiceAccountToken") is not None:
        return bool(account["automountServiceAccountToken"])
    return True


def _mount_token(spec: JsonObject) -> None:
    """Add the projected token volume and mount it in every container, like the plugin."""
    volumes = spec.setdefault("volumes", [])
    groups = ("initContainers", "containers", "ephemeralContainers")
    if any(
        mount.get("mountPath") == TOKEN_MOUNT_PATH
        for group in groups
        for container in spec.get(group) or []
        for mount in container.get("volumeMounts") or []
    ):
        return
    name = "kube-api-access-" + "".join(_random.choice(_NAME_ALPHABET) for _ in range(5))
    volumes.append(
        {
            "name": name,
            "projected": {
                "defaultMode": 0o644,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {
                                        "apiVersion": "v1",
                                        "fieldPath": "metadata.namespace",
                                    },
                                }
                            ]
                        }
                    },
                ],
            },
        }
    )
    for group in groups:
        for container in spec.get(group) or []:
            container.setdefault("volumeMounts", []).append(
                {"name": name, "mountPath": TOKEN_MOUNT_PATH, "readOnly": True}
            )

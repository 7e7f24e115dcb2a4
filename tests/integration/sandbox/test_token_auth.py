"""push_image against a registry with token auth (as GitLab's): the Bearer challenge path.

The registry is the real docker-registry in ``auth: token`` mode; the token service is a small
real HTTP server here that checks Basic credentials and signs ES256 JWTs with openssl.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ocscan.registry.credential import RegistryCredential
from ocscan.sandbox.errors import RegistryRequestError
from ocscan.sandbox.oci import ApkPackage, build_alpine_image, push_image
from ocscan.sandbox.processes import BackgroundProcess, free_port
from ocscan.sandbox.registry import make_tls_files

SERVICE, ISSUER = "sandbox-registry", "sandbox-token-issuer"
USER, PASSWORD = "tina", "tina-Pa55"
CANARY = "canary-Tk7-do-not-leak"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_to_raw_ecdsa(der: bytes) -> bytes:
    """An ECDSA DER signature (SEQUENCE of r, s) as JWS wants it: r || s, 32 bytes each."""
    assert der[0] == 0x30
    index = 2
    raw = b""
    for _ in range(2):
        assert der[index] == 0x02
        length = der[index + 1]
        raw += der[index + 2 : index + 2 + length].lstrip(b"\0").rjust(32, b"\0")
        index += 2 + length
    return raw


class TokenIssuer:
    def __init__(self, key: Path, cert: Path) -> None:
        self.key = key
        pem = cert.read_text()
        body = "".join(pem.split("-----")[2].split())
        self.x5c = [body]  # base64 DER, as the x5c header wants it
        self.requests: list[str] = []

    def token(self, scope: str) -> str:
        header = {"typ": "JWT", "alg": "ES256", "x5c": self.x5c}
        now = int(time.time())
        access = []
        if scope:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        claims = {"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": str(now), "access": access}  # fmt: skip
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        )
        der = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), capture_output=True, check=True,
        ).stdout  # fmt: skip
        return f"{signing_input}.{b64url(der_to_raw_ecdsa(der))}"


@pytest.fixture
def token_registry(registry_binaries: None, tmp_path: Path) -> Iterator[tuple[str, TokenIssuer]]:
    tls = make_tls_files(tmp_path / "tls")  # its CA signs the tokens' certificate, too
    issuer = TokenIssuer(tls.key_file, tls.cert_file)
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            issuer.requests.append(self.path)
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps({"token": issuer.token(query.get("scope", [""])[0])}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    token_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=token_server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        json.dumps({
            "version": "0.1",
            "log": {"level": "info"},
            "storage": {"filesystem": {"rootdirectory": str(tmp_path / "storage")}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": "x"},
            "auth": {"token": {
                "realm": f"http://127.0.0.1:{token_server.server_address[1]}/token",
                "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(tls.ca_file),
            }},
        })  # JSON is YAML
    )  # fmt: skip
    registry = BackgroundProcess.start(
        "docker-registry", ["docker-registry", "serve", str(config)], log_file=tmp_path / "log"
    )
    try:
        registry.wait_for_http(f"http://127.0.0.1:{port}/v2/")
        yield f"http://127.0.0.1:{port}", issuer
    finally:
        registry.stop()
        token_server.shutdown()
        token_server.server_close()


def test_push_through_a_bearer_token_challenge(
    token_registry: tuple[str, TokenIssuer],
) -> None:
    url, issuer = token_registry
    image = build_alpine_image([ApkPackage(name="musl", version="1.2.4_git20230717-r4")])

    digest = push_image(
        image, url, "group/project", "v1", credential=RegistryCredential.of(USER, PASSWORD)
    )

    assert digest == image.digest
    assert issuer.requests  # the token came from the token service
    assert all(f"service={SERVICE}" in request for request in issuer.requests)
    assert any("scope=repository%3Agroup%2Fproject%3A" in r for r in issuer.requests)


def test_bearer_challenge_with_a_wrong_password_names_the_refusing_token_service(
    token_registry: tuple[str, TokenIssuer],
) -> None:
    url, _ = token_registry
    image = build_alpine_image([ApkPackage(name="musl", version="1.2.4_git20230717-r4")])

    with pytest.raises(RegistryRequestError) as caught:
        push_image(
            image, url, "group/project", "v1", credential=RegistryCredential.of(USER, CANARY)
        )

    assert caught.value.status_code == 401
    assert caught.value.action.startswith("token request to http://127.0.0.1:")
    assert CANARY not in str(caught.value) + repr(caught.value)

"""The agent image's Dockerfile keeps its promises, checked without a container engine.

Pinned slim Python base, non-root user matching the Deployment, a health check on the
agent's /healthz, and dependencies installed only from hash-pinned requirement files that
hold exactly the runtime dependencies of pyproject.toml and their own, nothing of the
sandbox extra or the development tools.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ocscan.config import AgentConfig

ROOT = Path(__file__).parents[3]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SHA256 = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # 0 for ARGs before the first FROM, then 1, 2, ...


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            if current.strip():
                logical.append(current.strip())
            current = ""
    found, stage = [], 0
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        stage += keyword.upper() == "FROM"
        found.append(Instruction(keyword.upper(), " ".join(arguments.split()), stage))
    return found


DOCKERFILE = instructions((ROOT / "Dockerfile").read_text())
FINAL_STAGE = max(i.stage for i in DOCKERFILE)


def final(keyword: str) -> list[str]:
    return [i.arguments for i in DOCKERFILE if i.keyword == keyword and i.stage == FINAL_STAGE]


def agent_deployment() -> dict[str, Any]:
    documents = yaml.safe_load_all((ROOT / "deploy" / "base" / "agent.yaml").read_text())
    return next(d for d in documents if d["kind"] == "Deployment")


def test_every_stage_starts_from_the_pinned_slim_python_base() -> None:
    (default,) = [i.arguments for i in DOCKERFILE if i.keyword == "ARG" and i.stage == 0]
    name, _, image = default.partition("=")
    assert name == "PYTHON_IMAGE"
    # An exact patch release of 3.11 on Debian bookworm, optionally pinned by digest too.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
    for base in (i.arguments for i in DOCKERFILE if i.keyword == "FROM"):
        assert base.split()[0] == "${PYTHON_IMAGE}", base


def test_the_agent_runs_as_the_non_root_user_of_the_deployment() -> None:
    (user,) = final("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    security = agent_deployment()["spec"]["template"]["spec"]["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid))
    # Nothing runs after USER, and nothing switches back.
    position = next(n for n, i in enumerate(DOCKERFILE) if i.keyword == "USER")
    assert not [i for i in DOCKERFILE[position:] if i.keyword == "RUN"]


def test_the_health_check_asks_the_agents_healthz_with_python_only() -> None:
    (check,) = final("HEALTHCHECK")
    command = json.loads(check[check.index("CMD") + 3 :])
    assert command[:2] == ["python", "-c"] and "urllib.request" in command[2]
    env = " ".join(final("ENV"))
    url = re.search(r"HEALTHCHECK_URL=(\S+)", env)
    assert url is not None
    port = agent_deployment()["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    default_port = AgentConfig.model_fields["listen_port"].default
    assert url.group(1) == f"http://127.0.0.1:{default_port}/healthz"
    assert port["containerPort"] == default_port


def test_entrypoint_and_command_start_the_agent_with_the_mounted_config() -> None:
    assert [json.loads(e) for e in final("ENTRYPOINT")] == [["ocscan"]]
    (command,) = (json.loads(c) for c in final("CMD"))
    assert command[:2] == ["agent", "--config"]
    container = agent_deployment()["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert Path(command[2]).parent == Path(mounts["config"])
    assert mounts["tmp"] == "/tmp"  # the only writable place: HOME points there
    assert "HOME=/tmp" in " ".join(final("ENV"))


def test_pip_installs_only_hash_pinned_files_and_never_an_extra() -> None:
    runs = " ".join(i.arguments for i in DOCKERFILE if i.keyword == "RUN")
    installs = re.findall(r"pip (?:--python \S+ )?install ([^&]+)", runs)
    assert installs
    for install in installs:
        if "--no-index" in install:  # the wheel of ocscan built in this Dockerfile
            assert re.search(r"--no-deps --no-index /\S+/ocscan-\*\.whl", install), install
            continue
        assert "--require-hashes" in install and "--no-deps" in install, install
        assert re.search(r"-r requirements/(agent|build)\.txt", install), install
    assert "-r requirements/agent.txt" in runs
    assert not re.search(r"\.\[|sandbox|\bdev\b", runs), "an extra would bring test tools"


def requirement_file(name: str) -> dict[str, str]:
    """Name -> version of a hash-pinned requirements file; asserts every entry is one."""
    text = (ROOT / "requirements" / name).read_text().replace("\\\n", " ")
    pins: dict[str, str] = {}
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        requirement, *options = entry.split()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", requirement)
        assert match, f"{name}: not pinned with ==: {requirement}"
        assert options and all(SHA256.fullmatch(o) for o in options), f"{name}: {requirement}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


AGENT_PINS = requirement_file("agent.txt")


def declared(requirements: list[str]) -> dict[str, Requirement]:
    parsed = (Requirement(r) for r in requirements)
    return {canonicalize_name(r.name): r for r in parsed}


def test_the_runtime_dependencies_of_pyproject_are_pinned_at_their_versions() -> None:
    for name, requirement in declared(PYPROJECT["project"]["dependencies"]).items():
        (spec,) = requirement.specifier  # pyproject pins each one exactly
        assert spec.operator == "==", requirement
        assert AGENT_PINS.get(name) == spec.version, f"{name}: regenerate requirements/agent.txt"


def runtime_closure() -> set[str]:
    """pyproject's runtime dependencies and theirs, as installed here (markers evaluated for
    this interpreter: CPython 3.11 on Linux, like the image)."""
    todo = list(declared(PYPROJECT["project"]["dependencies"]).values())
    seen: set[tuple[str, str]] = set()  # (name, extra): lightkube needs httpx2[http2,ws]
    while todo:
        wanted = todo.pop()
        name = canonicalize_name(wanted.name)
        for extra in ("", *wanted.extras):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            for text in metadata.requires(name) or ():
                requirement = Requirement(text)
                if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                    todo.append(requirement)
    return {name for name, _ in seen}


def test_requirements_hold_exactly_the_runtime_closure() -> None:
    closure = runtime_closure()
    assert set(AGENT_PINS) == closure, {
        "missing": sorted(closure - set(AGENT_PINS)),
        "not needed": sorted(set(AGENT_PINS) - closure),
    }
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra in ("sandbox", "dev"):
        for name in declared(extras[extra]):
            assert name not in AGENT_PINS or name in closure, f"{name} of [{extra}]"


def test_pinned_versions_satisfy_what_each_pinned_package_requires() -> None:
    # Only metadata of the very release pinned counts (the venv may hold newer ones).
    checked = 0
    for name, version in AGENT_PINS.items():
        if metadata.version(name) != version:
            continue
        for text in metadata.requires(name) or ():
            requirement = Requirement(text)
            wanted = canonicalize_name(requirement.name)
            if wanted in AGENT_PINS and (
                requirement.marker is None or requirement.marker.evaluate({"extra": ""})
            ):
                assert requirement.specifier.contains(AGENT_PINS[wanted], prereleases=True), (
                    f"{name}=={version} requires {requirement}; {wanted}=={AGENT_PINS[wanted]}"
                )
                checked += 1
    assert checked >= 10


def test_build_requirements_pin_what_pyproject_builds_with() -> None:
    pins = requirement_file("build.txt")
    wanted = declared(PYPROJECT["build-system"]["requires"])
    assert set(wanted) <= set(pins)
    for name, requirement in wanted.items():
        assert requirement.specifier.contains(pins[name]), (name, pins[name])
    sources = ROOT / "requirements" / "build.in"
    assert set(declared([ln for ln in sources.read_text().splitlines() if ln[:1].isalpha()])) == (
        set(wanted)
    )


def copied_sources() -> list[str]:
    """What the Dockerfile copies from the build context (not from another stage)."""
    sources = []
    for copy in (i.arguments.split() for i in DOCKERFILE if i.keyword == "COPY"):
        if not copy[0].startswith("--from="):
            sources += [source.rstrip("/").removeprefix("./") for source in copy[:-1]]
    return sources


def test_the_build_context_is_an_allow_list_of_what_the_dockerfile_copies() -> None:
    rules = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln[:1] != "#"]
    assert rules[0] == "*", "everything else stays out: .venv, .git, sandbox state, kubeconfigs"
    allowed = [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]
    sources = copied_sources()
    assert {"pyproject.toml", "requirements/agent.txt", "src"} <= set(sources)
    for source in sources:
        assert any(source == rule or Path(source).match(rule) for rule in allowed), source
        assert (ROOT / source).exists(), source

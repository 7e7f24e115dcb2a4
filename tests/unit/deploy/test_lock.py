"""requirements/dev.txt (what make test installs) holds every pin of pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[3]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", re.MULTILINE)


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_holds_every_pin_of_pyproject_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        declared += extra
    lock_text = (ROOT / "requirements" / "dev.txt").read_text()
    locked = {normal(name): version for name, version in PIN.findall(lock_text)}
    for requirement in declared:
        name, _, version = requirement.partition("==")
        assert locked.get(normal(name)) == version, (
            f"{requirement} is not what requirements/dev.txt pins: run make lock"
        )
    # Every pinned package carries at least one hash (pip --require-hashes needs them).
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", lock_text.strip())
    assert all("--hash=sha256:" in block for block in blocks), "a pin without a hash"

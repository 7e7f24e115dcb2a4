from __future__ import annotations

from pathlib import Path

from ocscan.config import Config
from ocscan.config_reference import markdown, with_reference

README = Path(__file__).parents[3] / "README.md"


def test_every_key_is_documented_with_a_description() -> None:
    rows = [line for line in markdown().splitlines()[2:]]
    for section in Config.model_fields:
        assert any(row.startswith(f"| `{section}.") for row in rows), section
    assert all(row.rstrip(" |").rsplit("|", 1)[1].strip() for row in rows), "empty description"


def test_the_readme_holds_the_current_reference() -> None:
    text = README.read_text()
    assert with_reference(text) == text, (
        "README's configuration reference is stale: "
        "python -m ocscan.config_reference --update README.md"
    )

"""The configuration reference in Markdown, generated from the models so it cannot drift.

``python -m ocscan.config_reference`` prints it; ``... --update README.md`` rewrites the
README's section between the ``config-reference`` markers; a test checks it is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ocscan.config import Config


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return ""
    return f"`{json.dumps(value, default=str)}`"


def _nested(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows: list[str] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        nested = _nested(field)
        if nested is not None and not str(field.annotation).startswith("list"):
            if field.description:
                rows.append(f"| `{path}` | {_default(field) or '-'} | {field.description} |")
            rows.extend(_rows(nested, f"{path}."))
            continue
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{path}` | {_default(field)} | {description} |")
    return rows


def markdown() -> str:
    """Every key of the configuration file, with its default and meaning."""
    header = ["| key | default | meaning |", "| --- | --- | --- |"]
    return "\n".join(header + _rows(Config, "")) + "\n"


START = "<!-- config-reference:start -->\n"
END = "<!-- config-reference:end -->"


def with_reference(document: str) -> str:
    """``document`` with the text between the markers replaced by :func:`markdown`."""
    before, start, rest = document.partition(START)
    _, end, after = rest.partition(END)
    if not start or not end:
        raise ValueError("the document has no config-reference markers")
    return before + START + markdown() + END + after


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--update":
        path = Path(sys.argv[2])
        path.write_text(with_reference(path.read_text()))
    else:
        print(markdown(), end="")

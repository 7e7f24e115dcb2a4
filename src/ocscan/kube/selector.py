"""Parse a kubectl-style label selector string into lightkube's selector form."""

from __future__ import annotations

import re
from typing import Any

from lightkube import operators

from ocscan.errors import OcscanError


class InvalidSelectorError(OcscanError, ValueError):
    """A label selector string cannot be parsed."""

    def __init__(self, selector: str, reason: str) -> None:
        super().__init__(f"invalid label selector {selector!r}: {reason}")


_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s+\(([^)]*)\)$")
_BINARY = re.compile(rf"^({_KEY})\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")


def _split_terms(selector: str) -> list[str]:
    # Commas inside "(a,b)" belong to a set, not to the term list.
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    terms.append("".join(current).strip())
    return terms


def parse_label_selector(selector: str) -> list[tuple[str, Any]]:
    """``app=web,tier in (a,b),!legacy`` -> pairs for ``lightkube`` ``labels=``."""
    pairs: list[tuple[str, Any]] = []
    for term in _split_terms(selector):
        if not term:
            raise InvalidSelectorError(selector, "empty term")
        if match := _SET.match(term):
            key, op, raw = match.groups()
            values = [v.strip() for v in raw.split(",") if v.strip()]
            pairs.append((key, operators.in_(values) if op == "in" else operators.not_in(values)))
        elif match := _BINARY.match(term):
            key, op, value = match.groups()
            pairs.append(
                (key, operators.not_equal(value) if op == "!=" else operators.equal(value))
            )
        elif match := _EXISTS.match(term):
            negated, key = match.groups()
            pairs.append((key, operators.not_exists() if negated else operators.exists()))
        else:
            raise InvalidSelectorError(selector, f"cannot parse {term!r}")
    return pairs

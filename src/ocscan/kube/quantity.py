"""Resource quantities (``100m``, ``1Gi``, ``5e3``) as ``resource.Quantity`` parses them."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


class QuantityError(ValueError):
    """A quantity that does not parse; the message is the API server's."""


def parse_quantity(text: str) -> Decimal:
    """The value of ``text``; :class:`QuantityError` in apimachinery's words when malformed."""
    match = _QUANTITY_RE.match(text)
    if match is None:
        raise QuantityError(f"quantities must match the regular expression '{QUANTITY_PATTERN}'")
    number, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise QuantityError("unable to parse quantity's suffix") from None
    if suffix in _BINARY:
        return value * Decimal(1024) ** _BINARY[suffix]
    if suffix in _DECIMAL:
        return value.scaleb(_DECIMAL[suffix])
    exponent = re.fullmatch(r"[eE]([-+]?[0-9]+)", suffix)
    if exponent is None:
        raise QuantityError("unable to parse quantity's suffix")
    return value.scaleb(int(exponent.group(1)))

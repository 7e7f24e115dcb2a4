"""Kubernetes resource quantities, as the API server reads them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ocscan.kube.quantity import QuantityError, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("2", Decimal(2)),
        ("1Gi", Decimal(1024**3)),
        ("1.5Ki", Decimal(1536)),
        ("1G", Decimal(10**9)),
        ("5e3", Decimal(5000)),
        ("24Mi", Decimal(24 * 1024**2)),
    ],
)
def test_quantities_have_their_api_value(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_units_compare_by_value() -> None:
    assert parse_quantity("1024Mi") == parse_quantity("1Gi") < parse_quantity("1.1G")


@pytest.mark.parametrize("text", ["1GB", "4 Gi", "", "Gi", "1.2.3"])
def test_malformed_quantities_say_so_in_the_api_servers_words(text: str) -> None:
    with pytest.raises(QuantityError, match=r"quantities must match|unable to parse"):
        parse_quantity(text)

"""Kubernetes quantities (`500m`, `2`, `4Gi`, `1e3`) read as numbers, to compare them."""

from __future__ import annotations

import re
from decimal import Decimal, DecimalException

# resource.Quantity as the API server's OpenAPI document spells it.
QUANTITY = re.compile(
    r"(?P<number>[+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+)))"
    r"(?P<suffix>([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?"
)
BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(text: str) -> Decimal | None:
    """The value of a Kubernetes quantity (`500m` is 0.5, `2Gi` is 2**31); None if not one."""
    match = QUANTITY.fullmatch(text)
    if match is None:
        return None
    number, suffix = Decimal(match["number"]), match["suffix"] or ""
    if suffix in BINARY:
        return number * Decimal(1024) ** BINARY[suffix]
    if suffix in DECIMAL:
        return number * Decimal(10) ** DECIMAL[suffix]
    try:
        return number * Decimal(10) ** Decimal(suffix[1:])
    except DecimalException:  # an exponent too large for Decimal's context
        return None

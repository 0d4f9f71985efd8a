"""How a compound is reported: a per-state choice (rules data/settings.csv `compound`).

Kentucky (`first_ingredient`): the guide's DSP07 is "01 = State required NDC", so
the first controlled ingredient is the product dispensed (DSP07 01, DSP08 its
NDC) and further controlled ingredients follow as CDI segments; a compound with
one controlled ingredient is reported as that product alone. Ingredients the
drug list does not know (bases, fillers) are not reported, so every NDC in the
record is on the state's drug list. A generic ASAP collector (`code_06`) gets
the compound as captured: DSP07 06, DSP08 99999999999 and every ingredient as CDI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from cashcapture.core.pmp.records import PRODUCT_COMPOUND, PRODUCT_NDC, Dispensation, Ingredient
from cashcapture.core.pmp.rules import COMPOUND_FIRST_INGREDIENT


def as_reported(
    style: str, ingredients: tuple[Ingredient, ...], controlled: Callable[[str], bool]
) -> tuple[tuple[str, str] | None, tuple[Ingredient, ...]]:
    """(DSP07, DSP08) to report instead of the compound's own, and the CDI segments.

    None: keep DSP07/DSP08 as captured (code_06, or no ingredient is controlled:
    the validator then says why the record cannot go).
    """
    if style != COMPOUND_FIRST_INGREDIENT:
        return None, ingredients
    listed = [i for i in ingredients if i.product_id and controlled(i.product_id)]
    if not listed:
        return None, ingredients
    first, rest = listed[0], listed[1:]
    cdi = tuple(replace(i, sequence=str(n)) for n, i in enumerate(rest, 1))
    return (PRODUCT_NDC, first.product_id), cdi


def reported_fill(
    fill: Dispensation, style: str, controlled: Callable[[str], bool]
) -> Dispensation:
    """`as_reported` on a value Dispensation (certification shows the record so)."""
    if fill.product_qualifier != PRODUCT_COMPOUND or not fill.ingredients:
        return fill
    product, cdi = as_reported(style, fill.ingredients, controlled)
    if product is None:
        return fill
    return replace(fill, product_qualifier=product[0], product_id=product[1], ingredients=cdi)

"""Compounds as the state's rules report them (rules data/settings.csv `compound`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from cashcapture.core.pmp.asap.samples import (
    NDCS,
    NOT_CONTROLLED_NDC,
    compound_fill,
    patient,
    pharmacy,
    reported_compound_fill,
)
from cashcapture.core.pmp.compounds import as_reported, reported_fill
from cashcapture.core.pmp.records import Ingredient, Record
from cashcapture.core.pmp.rules import COMPOUND_CODE_06, COMPOUND_FIRST_INGREDIENT
from cashcapture.core.pmp.rules.ky import KY, KY_2011
from cashcapture.core.pmp.validate import validate_record

TODAY = date(2024, 3, 5)
CONTROLLED = set(NDCS)
BASE = Ingredient("1", NOT_CONTROLLED_NDC, Decimal("57"))


def _ing(seq: int, ndc: str) -> Ingredient:
    return Ingredient(str(seq), ndc, Decimal("1.5"))


def test_kentucky_settings_say_first_ingredient_and_ssn_rules():
    assert KY.compound == KY_2011.compound == COMPOUND_FIRST_INGREDIENT
    assert (KY.ssn, KY_2011.ssn) == ("ssa", "2011")


def test_one_controlled_ingredient_is_reported_as_that_product_alone():
    ings = (_ing(1, NDCS[2]), replace(BASE, sequence="2"))
    product, cdi = as_reported(COMPOUND_FIRST_INGREDIENT, ings, CONTROLLED.__contains__)
    assert product == ("01", NDCS[2]) and cdi == ()
    # the base comes first in the claim: still the controlled one is the product
    ings = (replace(BASE, sequence="1"), _ing(2, NDCS[2]))
    assert as_reported(COMPOUND_FIRST_INGREDIENT, ings, CONTROLLED.__contains__) == (
        ("01", NDCS[2]),
        (),
    )


def test_several_controlled_first_is_product_others_cdi_renumbered():
    ings = (_ing(1, NDCS[0]), replace(BASE, sequence="2"), _ing(3, NDCS[1]), _ing(4, NDCS[3]))
    product, cdi = as_reported(COMPOUND_FIRST_INGREDIENT, ings, CONTROLLED.__contains__)
    assert product == ("01", NDCS[0])
    assert [(i.sequence, i.product_id) for i in cdi] == [("1", NDCS[1]), ("2", NDCS[3])]


def test_generic_asap_keeps_06_and_every_ingredient():
    ings = (_ing(1, NDCS[0]), replace(BASE, sequence="2"))
    assert as_reported(COMPOUND_CODE_06, ings, CONTROLLED.__contains__) == (None, ings)
    fill = compound_fill(3)
    assert reported_fill(fill, COMPOUND_CODE_06, CONTROLLED.__contains__) is fill


def test_validator_kentucky_refuses_06_and_checks_every_reported_ndc():
    drug_list = set(NDCS)
    ky_form = reported_fill(compound_fill(3), KY.compound, drug_list.__contains__)
    assert (ky_form.product_qualifier, ky_form.product_id, ky_form.ingredients) == (
        "01",
        NDCS[0],
        (),
    )
    rec = Record(pharmacy(0), patient(3), ky_form)
    assert validate_record(rec, drug_list=drug_list, today=TODAY) == []
    two = Record(pharmacy(0), patient(3), reported_compound_fill(3))
    assert validate_record(two, drug_list=drug_list, today=TODAY) == []
    # a CDI whose NDC is not on the drug list is refused (every NDC reported is checked)
    off_list = replace(
        two, fill=replace(two.fill, ingredients=(replace(BASE, sequence="1", dosage_units="03"),))
    )
    got = validate_record(off_list, drug_list=drug_list, today=TODAY)
    assert [p.reject_reason for p in got] == [
        "CDI_PRODUCT_ID : NDC Number is not in State specified Drug List"
    ]
    # 06 + CDI: Kentucky wants 01 = State required NDC
    generic = Record(pharmacy(0), patient(3), compound_fill(3))
    both = replace(
        generic,
        fill=replace(
            generic.fill,
            ingredients=(generic.fill.ingredients[0], _ing(2, NDCS[1])),
        ),
    )
    [p] = validate_record(both, drug_list=drug_list, today=TODAY)
    assert p.element_id == "DSP07" and "first controlled ingredient" in p.text
    # the generic rules take the 06 compound, its base included
    asap = replace(KY, compound=COMPOUND_CODE_06)
    assert validate_record(generic, asap, drug_list=drug_list, today=TODAY) == []


def test_generic_rules_still_want_cdi_segments_for_06():
    asap = replace(KY, compound=COMPOUND_CODE_06)
    bare = Record(pharmacy(0), patient(3), replace(compound_fill(3), ingredients=()))
    [p] = validate_record(bare, asap, drug_list=set(NDCS), today=TODAY)
    assert (p.element_id, p.text) == ("DSP08", "Compound has no CDI ingredient segments")

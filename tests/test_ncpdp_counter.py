"""The counter rejects what ncpdp.validate finds in placement and formats (issue 13.5)."""

from __future__ import annotations

from _adapter_helpers import b1, schedule_of

import ncpdp
from cashcapture.adapter import adjudicate
from ncpdp import Segment, find


def _judge(req):
    return adjudicate.adjudicate(
        req,
        priors=[],
        schedule_of=schedule_of,
        pharmacy_known=True,
        auth_numbers=["AUTH0"],
        problems=ncpdp.validate(req),
    )


def _rejects(d):
    status = find(ncpdp.parse(ncpdp.build(d.response)).transactions[0], "21")
    return status.get("AN"), status.get_all("FB")


def test_claim_with_a_lost_segment_separator_is_rejected_with_field_codes():
    req = b1()
    group = req.transactions[0]
    pres = find(group, "03")
    if pres is None:
        pres = Segment("03", [("EZ", "01"), ("DB", "1234567893")])
        group.append(pres)
    pres.fields = [
        *pres.fields,
        *[("AM", "05"), ("4C", "1"), ("5C", "01"), ("6C", "03")],
        *[("HB", "1"), ("HC", "07"), ("DV", "DATA4")],
    ]
    req = ncpdp.parse(ncpdp.build(req))
    assert _judge(b1()).actions  # the same claim, well formed, is paid and captured
    d = _judge(req)
    status, codes = _rejects(d)
    assert status == "R" and not d.actions  # nothing captured
    assert codes[0] == "454"  # Prescriber Segment Incorrectly Formatted (the second AM)
    assert {"4C", "5C", "6C", "HB"} & set(codes)


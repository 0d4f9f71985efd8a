"""The adapter's hot-path shortcuts give the same answers as the plain ways.

capture: field values read from each segment's wire text in one split (first
occurrence wins, across segments in order), dates read once and cached.
"""

from __future__ import annotations

import datetime as dt

import pytest
from _adapter_helpers import b1, fx

import ncpdp
from cashcapture.adapter import adjudicate, capture
from ncpdp import Segment


def _plain_values(segments) -> dict[str, str]:
    """The plain reading: every field's stripped value, first occurrence wins."""
    out: dict[str, str] = {}
    for seg in segments:
        for code, raw in seg.fields:
            out.setdefault(code, raw.strip())
    return out


def test_wire_values_first_occurrence_parsed_and_built_alike():
    seg = Segment("07", [("D2", " 12 "), ("D3", "01"), ("D2", "99"), ("D6", "")])
    parsed = ncpdp.parse(ncpdp.build(b1()))
    assert capture.wire_values(seg) == {"D2": " 12 ", "D3": "01", "D6": ""}
    for s in parsed.transactions[0] + parsed.segments:
        twin = Segment(s.id, s.fields)  # built in memory from the parsed fields
        assert capture.wire_values(s) == capture.wire_values(twin)
        assert capture.wire_values(s) == dict(reversed(s.fields))
    assert capture.wire_values(Segment("04")) == {}


def test_first_values_mapping_strips_and_keeps_first_segment():
    segs = [Segment("07", [("D6", " 2 "), ("DE", "x")]), Segment("01", [("DE", "y"), ("CX", "02")])]
    raw: dict[str, str] = {}
    for s in reversed(segs):
        raw.update(capture.wire_values(s))
    values = capture.FirstValues(raw)
    assert dict(values) == _plain_values(segs) == {"D6": "2", "DE": "x", "CX": "02"}
    assert values.get("CX") == "02" and values.get("ZZ", "-") == "-" and values["D6"] == "2"
    with pytest.raises(KeyError):
        values["ZZ"]
    assert len(values) == 3


def _as_tuples(ex: capture.Extracted):
    return ex.values, [(p.reject, p.field, p.reason) for p in ex.problems], ex.ingredients


@pytest.mark.parametrize("required", [True, False])
def test_extract_fill_same_on_parsed_and_in_memory_claims(required):
    for make in (fx.b1_cash, fx.b1_cash_4, fx.b1_compound, fx.b3_rebill, fx.e1_eligibility):
        built = make()
        parsed = ncpdp.parse(ncpdp.build(built))
        for i in range(len(built.transactions)):
            dos = built.header.date_of_service
            a = capture.extract_fill(dos, adjudicate.tx_segments(built, i), required=required)
            b = capture.extract_fill(dos, adjudicate.tx_segments(parsed, i), required=required)
            assert _as_tuples(a) == _as_tuples(b)
            assert capture.product_ndcs(adjudicate.tx_segments(built, i)) == (
                capture.product_ndcs(adjudicate.tx_segments(parsed, i))
            )


def test_extract_fill_repeated_segment_ids_first_value_wins():
    req = b1()
    claim = req.transactions[0][0]
    days = claim.get("D5")
    first = Segment("07", [(c, v) for c, v in claim.fields if c != "D5"])
    second = Segment("07", [("D5", days), ("D3", "07")])  # D5 only here; D3 in both
    rest = [*req.transactions[0][1:], *req.segments]
    segs = [first, second, *rest]
    ex = capture.extract_fill(req.header.date_of_service, segs)
    assert ex.problems == []
    assert ex.values["days_supply"] == int(days)
    assert ex.values["fill_number"] == int(claim.get("D3"))
    # a field of the message-level segments that an earlier segment also carries
    patient = ncpdp.find(req.segments, "01")
    assert patient.get("CX") == "02"  # a state ID: PAT01 names the patient's state
    ex = capture.extract_fill(req.header.date_of_service, [first, second, *rest])
    assert ex.values["patient_id_jurisdiction"] == patient.get("CO")
    early = Segment("07", [*first.fields, ("CX", "01"), ("D5", days)])  # SSN, read first
    ex = capture.extract_fill(req.header.date_of_service, [early, *rest])
    assert "patient_id_jurisdiction" not in ex.values


def test_date_cache_returns_dates_and_refuses_bad_ones_every_time():
    assert capture._date("20240315") == dt.date(2024, 3, 15)
    assert capture._date("20240315") is capture._date("20240315")
    for _ in range(2):
        with pytest.raises(capture.Invalid):
            capture._date("20241315")


# --- logs: lines straight to the handler, written once per turn of the loop -----


@pytest.fixture
def log_stream():
    import io
    import logging

    from cashcapture.adapter import logs

    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logs._handler)
    stream = io.StringIO()
    logs.setup("INFO", stream)
    yield stream
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])
    logs._handler = saved[2]


def _only_setup_handler() -> None:
    """pytest adds its capturing handler to the root for each test: take it off."""
    import logging

    from cashcapture.adapter import logs

    logging.getLogger().handlers[:] = [logs._handler]


def _lines(stream) -> list[dict]:
    import json

    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_log_event_direct_line_equals_the_record_path(log_stream):
    import logging

    from cashcapture.adapter import logs

    _only_setup_handler()
    log = logging.getLogger("cashcapture.test_fastpaths")
    assert logs._direct(log, logging.INFO) is logs._handler
    fields = dict(claim_id=7, pharmacy="1234567893", status="P", reject_codes=None,
                  latency_ms=1.5, patient_last_name="HOLLOWAY", captured=1)
    logs.event(log, "claim", **fields)  # direct: only setup's handler would see it
    log.addFilter(lambda record: True)  # a filter: the record path
    try:
        assert logs._direct(log, logging.INFO) is None
        logs.event(log, "claim", **fields)
    finally:
        log.filters.clear()
    logs.event(log, "claim", logging.DEBUG, **fields)  # below the level: nothing
    direct, recorded = _lines(log_stream)
    assert direct.pop("ts") <= recorded.pop("ts")
    assert direct == recorded == {
        "level": "info", "logger": "cashcapture.test_fastpaths", "event": "claim",
        "claim_id": 7, "pharmacy": "1234567893", "status": "P", "latency_ms": 1.5, "captured": 1,
    }


def test_log_lines_of_one_loop_turn_written_together_in_order(log_stream):
    import asyncio
    import logging
    import threading

    from cashcapture.adapter import logs

    _only_setup_handler()
    log = logging.getLogger("cashcapture.test_fastpaths")
    assert logs._direct(log, logging.INFO) is logs._handler
    writes: list[str] = []
    write = log_stream.write
    log_stream.write = lambda text: writes.append(text) or write(text)  # type: ignore[method-assign]

    async def main() -> list[str]:
        for i in range(3):
            logs.event(log, "claim", claim_id=i)
        held = log_stream.getvalue()
        # a line from a thread without a loop goes out at once, after those held
        t = threading.Thread(target=lambda: log.warning("from_thread"))
        t.start()
        t.join()
        logs.event(log, "claim", claim_id=3)
        await asyncio.sleep(0)
        return [held]

    (held,) = asyncio.run(main())
    assert held == ""  # nothing written within the turn
    assert [d["event"] for d in _lines(log_stream)] == ["claim"] * 3 + ["from_thread", "claim"]
    assert [d.get("claim_id") for d in _lines(log_stream)] == [0, 1, 2, None, 3]
    # three lines held, written with the thread's; then the last one on the next turn
    assert len(writes) == 2


def test_log_lines_held_at_exit_are_written(tmp_path):
    import subprocess
    import sys

    script = (
        "import asyncio, logging, sys\n"
        "from cashcapture.adapter import logs\n"
        "logs.setup('INFO', sys.stdout)\n"
        "log = logging.getLogger('cashcapture.exit')\n"
        "loop = asyncio.new_event_loop()\n"
        "def last():\n"
        "    for i in range(500): logs.event(log, 'claim', claim_id=i)\n"
        "    loop.stop()\n"  # the loop ends before the turn that would write them
        "loop.call_soon(last)\n"
        "loop.run_forever()\n"
        "loop.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert [line.count('"claim_id"') for line in out.splitlines()] == [1] * 500
    assert out.splitlines()[-1].endswith('"claim_id":499}')


def test_pricing_zero_amounts_from_the_table_equal_wire():
    from decimal import Decimal

    from ncpdp.responses import Pricing

    for gross in (Decimal("0"), Decimal("-0.00"), Decimal("0E+3"), Decimal("12.50"), 0, 7):
        pricing = Pricing(patient_pay=gross, copay=gross, ingredient_cost_paid=Decimal("0.00"))
        seg = pricing.segment()
        expected = [(c, ncpdp.wire(c, v)) for c, v in
                    (("F5", gross), ("F6", 0), ("F7", 0), ("FI", gross), ("F9", 0))]
        assert seg.fields == expected
        assert ncpdp.typed("F5", seg.get("F5")) == gross


# --- responses: segments made by the builder go to build as wire text ----------


def _ordinary(msg):
    """The same message with every segment made the ordinary way (a field list)."""
    from ncpdp import Response

    def again(segs):
        return [Segment(s.id, list(s.fields)) for s in segs]

    return Response(msg.header, again(msg.segments), [again(t) for t in msg.transactions])


def test_built_responses_round_trip_and_match_the_ordinary_build():
    from decimal import Decimal

    from ncpdp import responses
    from ncpdp.responses import Answer, Pricing

    long = "PMP missing: Date Of Birth, Patient Street Address, Prescriber DEA Number"
    answers = [
        Answer("P", authorization_number="C0A1B2C3D4", messages=["Cash claim captured for PMP"],
               pricing=Pricing.patient_pays_all(Decimal("125.50"))),
        Answer("R", ("09", "CM", "25", "09"), messages=[long, "x" * 400]),
        Answer("A", messages=[""]),
    ]
    for make in (fx.b1_cash, fx.b1_cash_4, fx.e1_eligibility):
        req = ncpdp.parse(ncpdp.build(make()))
        n = len(req.transactions) or 1
        for a in answers:
            resp = responses.respond(req, [a] * n, message="note")
            data = ncpdp.build(resp)
            assert data == ncpdp.build(_ordinary(resp))
            assert ncpdp.parse(data) == resp == _ordinary(resp)
            assert ncpdp.build(ncpdp.parse(data)) == data
    reject = responses.transmission_rejected(req, ["R8"], message="bad")
    assert ncpdp.build(reject) == ncpdp.build(_ordinary(reject))


@pytest.mark.parametrize("bad", ["line\x1cwith a separator", "a\x1dgroup", "a\x1esegment"])
def test_built_response_with_a_separator_in_a_value_is_still_refused(bad):
    from ncpdp import BuildError, responses
    from ncpdp.responses import Answer

    req = ncpdp.parse(ncpdp.build(fx.b1_cash()))
    for resp in (
        responses.respond(req, [Answer("A", messages=[bad])]),
        responses.respond(req, [Answer("A", authorization_number=bad)]),
        responses.respond(req, [Answer("A")], message=bad),
    ):
        with pytest.raises(BuildError):
            ncpdp.build(resp)
    with pytest.raises(BuildError):
        ncpdp.build(responses.respond(req, [Answer("A", authorization_number=7)]))  # type: ignore[arg-type]

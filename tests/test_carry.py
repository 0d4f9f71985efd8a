"""One bad character never stops the day's files: every door asks what the file can carry."""

from __future__ import annotations

import pytest
from _adapter_helpers import b1
from _extract_helpers import TODAY, good_fill, pharmacies, sessions, settings  # noqa: F401
from sqlalchemy import select
from test_adjudicate import judge, tx

import ncpdp
from cashcapture.core.pharmacies import RegistryError, clean_row
from cashcapture.core.pmp.carry import carriable, first_uncarriable
from cashcapture.core.store import Fill, RecordReject
from extract.daily import extract


@pytest.mark.parametrize(
    "value", ["SM*TH", "MAIN~ST", "LEX\rINGTON", "LEX\nINGTON", "DOE\x00", "\x02A\x03", "A\x1a",
              "\uff14\uff10\uff15\uff10\uff13", "\u20ac"],
)
def test_what_no_file_can_carry(value):
    assert not carriable(value)
    assert first_uncarriable(["PAT", "ok", value]) == 2


@pytest.mark.parametrize("value", ["JOSÉ", "O'BRIEN", "123 MAIN ST APT #4", "ST. LOUIS-DE"])
def test_what_a_latin1_file_carries(value):
    assert carriable(value) and first_uncarriable(["PAT", value]) is None


@pytest.mark.parametrize(
    "seg,code,value,reject",
    [
        ("01", "CB", "SM*TH", "CB"),
        ("01", "CA", "ANN~MARIE", "CA"),
        ("01", "CM", "1 MAIN ST\r\nAPT 2", "CM"),
        ("01", "CN", "LEXINGTON\x00", "CN"),
        ("01", "CP", "4050\u00b3", "CP"),  # a superscript is not a digit
        ("07", "D2", "123456\u00b2", "16"),  # the Rx number's own reject, not 99
    ],
)
def test_the_counter_rejects_a_value_the_file_cannot_carry(seg, code, value, reject):
    req = b1()
    where = req.segments if seg == "01" else req.transactions[0]
    s = ncpdp.find(where, seg)
    s.fields = [(c, value if c == code else v) for c, v in s.fields]
    d = judge(ncpdp.parse(ncpdp.build(req)))  # as the pharmacy system sent it
    assert d.status == "R" and d.actions == []
    status = ncpdp.find(tx(d, 0), "21")
    assert reject in status.get_all("FB") and "99" not in status.get_all("FB")
    text = " ".join(status.get_all("FQ"))
    assert value not in text


@pytest.mark.parametrize("name", ["Main*Street Pharmacy", "Main Street\nPharmacy", "A~B"])
def test_the_registry_refuses_a_name_the_file_cannot_carry(name):
    row = {"dea": "BB4827133", "name": name, "state": "KY"}
    with pytest.raises(RegistryError) as e:
        clean_row(row)
    assert "name" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("where", ["patient_last_name", "patient_address1", "prescriber_last_name"])
def test_one_value_no_file_can_carry_holds_back_only_its_record(sessions, tmp_path, where):  # noqa: F811
    """Written straight into the store (an older counter, an import): the extract holds the
    record back as a reject and every other record and pharmacy still gets its file."""
    with sessions.begin() as s:
        ph = pharmacies(s)
        good_fill(s, ph["solo"], "100001")
        good_fill(s, ph["solo"], "100002", **{where: "SM*TH~\r\n"})
        good_fill(s, ph["chain1"], "200001")
    result = extract(sessions, settings(tmp_path, zero_reports="off"), TODAY)
    assert result.rejected == 1 and not result.failed
    assert sorted(f.records for f in result.files) == [1, 1]
    with sessions() as s:
        [reject] = s.scalars(select(RecordReject)).all()
        fill = s.get(Fill, reject.fill_id)
        assert fill.rx_number == "100002"
        assert "cannot carry" in reject.message and "SM*TH" not in reject.message
    for f in result.files:
        content = (tmp_path / "outbox" / f.name).read_bytes()
        assert b"100001" in content or b"200001" in content
        assert b"100002" not in content

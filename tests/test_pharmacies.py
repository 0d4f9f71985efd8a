"""Pharmacy registry: DEA and NPI checks, all-or-nothing import, CLI. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cashcapture.app import demo_claims
from cashcapture.core.ids import dea_ok, npi_ok
from cashcapture.core.pharmacies import (
    RegistryError,
    file_name_part_ok,
    import_csv,
    list_pharmacies,
    read_csv,
)
from cashcapture.core.pmp.filenames import file_name
from cashcapture.core.store import Pharmacy, find_pharmacy
from cli import main

FIXTURE = Path(__file__).parents[1] / "fixtures" / "pharmacies.csv"
HEADER = "dea,name,npi,ncpdp_id,submitter_id\n"


@pytest.mark.parametrize("dea", ["AB1234563", "BB4827133", "FP1234563", "M91234563"])
def test_valid_dea(dea):
    assert dea_ok(dea)


@pytest.mark.parametrize("dea", ["AB1234564", "AB123456", "1B1234563", "AB12345631", "ab1234563"])
def test_invalid_dea(dea):
    assert not dea_ok(dea)


def test_npi_luhn_with_80840_prefix():
    assert npi_ok("1234567893")  # the CMS example
    assert not npi_ok("1234567890")
    assert not npi_ok("123456789")
    assert not npi_ok("12345678a3")
    assert not npi_ok("123456789\u00b3")  # a superscript digit is not a digit
    assert not dea_ok("AB1234563\n") and not dea_ok("AB123456\u00b3")


def test_fixture_pharmacies_are_valid_and_one_chain():
    rows = read_csv(FIXTURE.read_text())
    assert len(rows) >= 3
    assert all(dea_ok(r["dea"]) and npi_ok(r["npi"]) for r in rows)
    chains = [r for r in rows if r.get("submitter_id")]
    assert len(chains) == 2 and len({r["submitter_id"] for r in chains}) == 1


def test_fixture_pharmacies_make_state_file_names():
    """Each registered pharmacy's submitter ID and RegKey go into the KY file name."""
    when = dt.datetime(2025, 1, 15, 23, 30)
    for r in read_csv(FIXTURE.read_text()):
        submitter = str(r.get("submitter_id") or r["dea"])
        name = file_name(submitter, str(r["reg_key"]), when)
        assert name == f"PMP_KY_{submitter}_{r['reg_key']}_20250115233000.dat"


def test_the_demo_registers_the_fixture_pharmacies():
    assert FIXTURE.read_text() == demo_claims.PHARMACIES_CSV


@pytest.mark.parametrize(
    ("value", "ok"),
    [("9004", True), ("CWDRUGS", True), ("A" * 40, True), ("KYREG-1", False),
     ("CW.DRUGS", False), ("CW_DRUGS", False), ("KY REG", False), ("A" * 41, False)],
)  # fmt: skip
def test_submitter_id_and_reg_key_are_what_the_file_name_takes(value, ok):
    if len(value) <= 40:  # the registry's column width; the rest is the writer's rule
        try:
            file_name(value, value, dt.datetime(2025, 1, 15))
        except ValueError:
            assert not ok
        else:
            assert ok
    assert file_name_part_ok(value) is ok
    for column in ("submitter_id", "reg_key"):
        csv_text = f"dea,name,{column}\nAB1234563,X,{value}\n"
        if ok:
            assert read_csv(csv_text)[0][column] == value
        else:
            with pytest.raises(RegistryError, match=f"row 1: column {column}: .*letters and"):
                read_csv(csv_text)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("AB1234564,X,,,\n", "row 1: column dea"),
        ("AB1234563,X,1234567890,,\n", "row 1: column npi"),
        ("AB1234563,X,,12345,\n", "row 1: column ncpdp_id"),
        (",X,,,\n", "row 1: column dea: dea is required"),
        ("AB1234563,,,,\n", "row 1: column name"),
        ("AB1234563,X,,,\nFP1234563,Y,,,,extra\n", "row 2: more values"),
        ("AB1234563,X,,,\nAB1234563,Y,,,\n", "row 2: column dea: AB1234563 repeats row 1"),
    ],
)
def test_bad_row_names_row_and_column_and_writes_nothing(db_session, body, message):
    with pytest.raises(RegistryError, match=message):
        import_csv(db_session, HEADER + body)
    db_session.rollback()
    assert db_session.scalar(select(func.count(Pharmacy.id))) == 0


def test_import_then_find_by_any_provider_id(db_session):
    added = import_csv(db_session, FIXTURE.read_text()).added
    db_session.commit()
    assert [p.dea for p in list_pharmacies(db_session)] == [p.dea for p in added]
    first = added[0]
    for provider_id in (first.ncpdp_id, first.npi, first.dea):
        assert find_pharmacy(db_session, provider_id).id == first.id
    assert find_pharmacy(db_session, "0000000") is None
    again = import_csv(db_session, FIXTURE.read_text())  # the same file: nothing changes
    assert (again.added, again.updated, len(again.unchanged)) == ([], [], 4)


def test_cli_import_list_add(migrated_db_url, tmp_path, capsys):
    db = ["--db", migrated_db_url]
    bad = tmp_path / "bad.csv"
    bad.write_text(FIXTURE.read_text() + "AB1234564,Broken,,,,,,,,,,,,\n")
    assert main(["pharmacy", "import", str(bad), *db]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "row 5: column dea" in err and "nothing imported" in err
    assert main(["pharmacy", "list", "--json", *db]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert main(["pharmacy", "import", str(FIXTURE), *db]) == 0
    assert "4 added, 0 updated, 0 unchanged" in capsys.readouterr().out
    assert main(["pharmacy", "add", "--dea", "AB1234564", "--name", "X", *db]) == 2
    assert "--dea: dea 'AB1234564' is not a DEA number" in capsys.readouterr().err
    assert main(["pharmacy", "add", "--dea", "FP1234563", "--name", "Test Rx",
                 "--npi", "1234567893", "--submitter-id", "S1", *db]) == 0  # fmt: skip
    assert main(["pharmacy", "add", "--dea", "FP1234563", "--name", "Again", *db]) == 2
    assert "already registered" in capsys.readouterr().err
    assert main(["pharmacy", "list", "--json", *db]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["dea"] for r in rows][-1] == "FP1234563" and len(rows) == 5
    assert rows[-1]["submitter_id"] == "S1" and rows[-1]["active"] is True
    assert main(["pharmacy", "list", *db]) == 0
    assert "Commonwealth Drugs #102" in capsys.readouterr().out


def test_cli_needs_an_upgraded_database(db_url, capsys, monkeypatch):
    monkeypatch.setenv("CASHCAPTURE_DB", db_url)
    assert main(["pharmacy", "list"]) == 2
    assert "db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    assert main(["pharmacy", "list"]) == 0


def test_import_is_idempotent_and_lists_what_changed(migrated_db_url, tmp_path, capsys):
    db = ["--db", migrated_db_url]
    assert main(["pharmacy", "import", str(FIXTURE), *db]) == 0
    capsys.readouterr()
    assert main(["pharmacy", "import", str(FIXTURE), *db]) == 0
    assert capsys.readouterr().out.strip().endswith("0 added, 0 updated, 4 unchanged")
    changed = tmp_path / "changed.csv"
    text = FIXTURE.read_text().replace("Kentucky River Drug", "Kentucky River Drug II")
    changed.write_text(text.replace(",Suite 2,", ",,"))
    assert main(["pharmacy", "import", str(changed), *db]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "updated     BK3055185 Kentucky River Drug II: name, address2",
        f"{changed}: 0 added, 1 updated, 3 unchanged",
    ]
    assert main(["pharmacy", "list", "--json", *db]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["dea"] == "BK3055185")
    assert row["address2"] is None and row["name"] == "Kentucky River Drug II"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('AB1234563,"unterminated,,,\n', "not valid CSV (unexpected end of data)"),
        ("AB1234563," + "x" * 131_073 + "\n", "field larger than field limit"),
    ],
)
def test_a_csv_that_is_not_csv_is_one_line_and_nothing_imported(
    migrated_db_url, tmp_path, capsys, body, words
):
    bad = tmp_path / "bad.csv"
    bad.write_text("dea,name,city\n" + body)
    assert main(["pharmacy", "import", str(bad), "--db", migrated_db_url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "nothing imported" in err
    assert main(["pharmacy", "list", "--json", "--db", migrated_db_url]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_update_and_deactivate(migrated_db_url, capsys):
    db = ["--db", migrated_db_url]
    assert main(["pharmacy", "import", str(FIXTURE), *db]) == 0
    capsys.readouterr()
    assert main(["pharmacy", "update", "bk3055185", "--city", "Richmond", "--phone", "", *db]) == 0
    assert capsys.readouterr().out.strip() == "pharmacy BK3055185 Kentucky River Drug: city, phone"
    for argv, words in (
        (["update", "BK3055185", "--npi", "1748392614"], "npi: 1748392614 is registered to BB4"),
        (["update", "BK3055185", "--zip", "123"], "column zip: zip '123' is not a 5- or 9-digit"),
        (["update", "BK3055185", "--name", ""], "name cannot be blank"),
        (["update", "BK3055185"], "nothing to change"),
        (["update", "AB1234563", "--city", "X"], "no pharmacy with DEA AB1234563"),
        (["deactivate", "AB1234563"], "no pharmacy with DEA AB1234563"),
    ):
        assert main(["pharmacy", *argv, *db]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, (argv, err)
    assert main(["pharmacy", "deactivate", "BK3055185", *db]) == 0
    assert "deactivated" in capsys.readouterr().out
    assert main(["pharmacy", "deactivate", "BK3055185", *db]) == 0
    assert "already inactive" in capsys.readouterr().out
    assert main(["pharmacy", "list", "--json", *db]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["dea"] == "BK3055185")
    assert (row["city"], row["phone"], row["active"]) == ("Richmond", None, False)

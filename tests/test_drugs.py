"""Drug list: NDC normalisation, building from the FDA files, the shipped list."""

from __future__ import annotations

from pathlib import Path

import pytest

from cashcapture.core import drugs
from cli import main

FDA = Path(__file__).parent / "data" / "fda"
PRODUCT, PACKAGE = FDA / "product.txt", FDA / "package.txt"


@pytest.mark.parametrize(
    ("text", "ndc11"),
    [
        ("0054-4571-25", "00054457125"),  # 4-4-2
        ("65862-103-05", "65862010305"),  # 5-3-2
        ("24275-0485-1", "24275048501"),  # 5-4-1
        ("43353-0675-53", "43353067553"),  # 5-4-2
        ("00054457125", "00054457125"),
        (" 0093-4444-05 ", "00093444405"),
    ],
)
def test_normalize_ndc(text, ndc11):
    assert drugs.normalize_ndc(text) == ndc11


@pytest.mark.parametrize(
    "garbage", ["", "abc", "0054-4571", "0054457125", "123456789012", "1-2-3", "0054-4571-2x"]
)
def test_normalize_ndc_refuses_garbage(garbage):
    with pytest.raises(ValueError):
        drugs.normalize_ndc(garbage)


def test_ten_undashed_digits_have_three_readings():
    assert drugs.ndc_candidates("0054457125") == ["00054457125", "00544057125", "00544571205"]


@pytest.fixture(scope="module")
def built() -> list[drugs.Drug]:
    return drugs.build(PRODUCT, PACKAGE)


def _fda(path: Path) -> list[list[str]]:
    lines = path.read_bytes().decode("latin-1").split("\r\n")
    return [line.split("\t") for line in lines[1:] if line]


def test_build_takes_every_package_with_its_schedule_or_none(built):
    products = {row[0]: row for row in _fda(PRODUCT)}
    federal = {d.ndc11: d.schedule for d in built if not d.state}
    expected = {drugs.normalize_ndc(code): products[pid][17] for pid, _, code, *_ in _fda(PACKAGE)}
    assert federal == expected
    assert set(federal.values()) == {"CII", "CIII", "CIV", "CV", ""}
    assert all(d.product for d in built if d.controlled)
    assert not any(d.product for d in built if not d.controlled)  # names only where used


def test_build_adds_kentucky_gabapentin_not_enacarbil(built):
    ky = {d.ndc11: d for d in built if d.state == "KY"}
    assert ky["00093444405"].schedule == "CV"
    assert ky["00093444405"].product == "Gabapentin"
    assert "53451010301" not in ky  # Horizant, gabapentin enacarbil
    assert all(d.schedule == "CV" for d in ky.values()) and len(ky) > 10


def test_state_directory_answers_controlled_not_controlled_or_unknown(built, tmp_path):
    drugs.write_list(built, tmp_path / "list.csv")
    text = (tmp_path / "list.csv").read_text()
    ky = drugs.parse_directory(text, "KY")
    oh = drugs.parse_directory(text, "OH")
    assert ky.lookup("0054-4571-25").schedule == "CII"  # methadone
    assert ky.lookup("0054-4571-25").schedule_number == "2"
    assert ky.lookup("43353-675-53").schedule == "CV"  # Lyrica (pregabalin)
    assert ky.is_reportable("0093444405")  # gabapentin, 10 undashed digits
    assert not oh.is_reportable("00093444405")  # not scheduled outside KY
    assert oh.schedule_of("00093444405") is None  # ... but listed: not controlled there
    assert oh.is_reportable("00054457125")
    for not_controlled in ("65862-103-05", "53451-0103-1", "24275-0485-1"):
        assert not ky.is_reportable(not_controlled)
        assert ky.knows(not_controlled) and ky.schedule_of(not_controlled) is None
    assert ky.lookup("garbage") is None and ky.schedule_of("garbage") is None
    # not in the directory: unknown, never "not controlled"
    assert not ky.knows("99999-9999-99")
    assert ky.schedule_of("99999-9999-99") == drugs.UNKNOWN
    assert drugs.parse_directory(text, "KY").known_count == len({d.ndc11 for d in built})
    # the fast reader and the csv reader agree
    assert ky.known_count == drugs.Directory(drugs.read_list(text, "KY")).known_count
    assert list(ky) == list(drugs.Directory(drugs.read_list(text, "KY")))


def test_shipped_directory_answers():
    ky = drugs.load("KY")
    assert drugs.load("KY") is ky  # cached
    assert len(ky) > 10_000  # controlled in KY
    assert ky.known_count > 240_000  # the whole FDA directory of April 2019
    assert ky.lookup("00054457125").schedule == "CII"
    assert ky.lookup("00093444405").schedule == "CV"
    assert not ky.is_reportable("65862010305")  # amlodipine
    assert ky.schedule_of("65862010305") is None
    assert ky.schedule_of("00172375960") == drugs.UNKNOWN  # lisinopril, newer than 2019
    assert not drugs.load("TN").is_reportable("00093444405")


def test_bad_fda_file_is_refused(tmp_path):
    bad = tmp_path / "product.txt"
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="not an FDA NDC file"):
        drugs.build(bad, PACKAGE)
    lines = PACKAGE.read_bytes().split(b"\r\n")
    cells = lines[3].split(b"\t")
    cells[2] = b"12-34"  # NDCPACKAGECODE
    package = tmp_path / "package.txt"
    package.write_bytes(b"\r\n".join([*lines[:3], b"\t".join(cells), *lines[4:]]))
    with pytest.raises(ValueError, match="package.txt line 4: not an NDC: '12-34'"):
        drugs.build(PRODUCT, package)


def test_cli_import_and_show(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no cashcapture.db here: nothing to classify
    monkeypatch.delenv("CASHCAPTURE_DB", raising=False)
    out = tmp_path / "directory.csv"
    assert main(["drugs", "import", str(PRODUCT), str(PACKAGE), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "state additions: KY" in said and "no store" in said
    assert drugs.read_list(out.read_text()) == drugs.build(PRODUCT, PACKAGE)
    assert not (tmp_path / "cashcapture.db").exists()
    assert main(["drugs", "show", "0054-4571-25"]) == 0
    assert "schedule CII" in capsys.readouterr().out
    assert main(["drugs", "show", "65862-103-05"]) == 1
    assert "not controlled in KY" in capsys.readouterr().out
    assert main(["drugs", "show", "99999-9999-99"]) == 3
    assert "not in the drug directory" in capsys.readouterr().out
    assert main(["drugs", "show", "12-34"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an NDC" in err
    nowhere = tmp_path / "no such folder" / "directory.csv"
    assert main(["drugs", "import", str(PRODUCT), str(PACKAGE), "--out", str(nowhere)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"cannot write {nowhere}" in line


def _fda_copy(tmp_path, keep_products: int | None) -> tuple[Path, Path]:
    """product.txt with its header and the first `keep_products` rows (None: all)."""
    lines = PRODUCT.read_text(encoding="latin-1").splitlines(keepends=True)
    kept = lines if keep_products is None else lines[: 1 + keep_products]
    product = tmp_path / "product.txt"
    product.write_text("".join(kept), encoding="latin-1")
    return product, PACKAGE


@pytest.mark.parametrize(
    ("keep", "words"),
    [(0, "holds no controlled product"), (3, "would shrink from")],
)
def test_import_refuses_a_list_that_loses_ndcs_and_keeps_the_old(
    tmp_path, capsys, monkeypatch, keep, words
):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "directory.csv"
    assert main(["drugs", "import", str(PRODUCT), str(PACKAGE), "--out", str(out)]) == 0
    before = out.read_text()
    capsys.readouterr()
    product, package = _fda_copy(tmp_path, keep)
    assert main(["drugs", "import", str(product), str(package), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "unchanged" in err[0]
    assert out.read_text() == before  # the old list untouched
    # on purpose: --force (or a wider --max-shrink for a real shrink) takes it
    extra = ["--force"] if keep == 0 else ["--max-shrink", "100"]
    assert main(["drugs", "import", str(product), str(package), "--out", str(out), *extra]) == 0
    assert out.read_text() != before


def test_import_refuses_a_directory_that_keeps_its_ndcs_but_loses_their_schedules(
    tmp_path, capsys, monkeypatch
):
    """Every NDC still listed, but most DEA schedules gone (a file cut at a column, a bad
    export): as many NDCs, far fewer controlled ones. Refused: each would be paid as not
    controlled and never reported."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "directory.csv"
    assert main(["drugs", "import", str(PRODUCT), str(PACKAGE), "--out", str(out)]) == 0
    before = out.read_text()
    capsys.readouterr()
    header, *rows = PRODUCT.read_text(encoding="latin-1").splitlines(keepends=True)
    column = header.split("\t").index("DEASCHEDULE")
    kept = []
    for n, row in enumerate(rows):
        cells = row.split("\t")
        if n % 4 and cells[column] in drugs.SCHEDULES:
            cells[column] = ""
        kept.append("\t".join(cells))
    product = tmp_path / "product.txt"
    product.write_text(header + "".join(kept), encoding="latin-1")
    built = drugs.build(product, PACKAGE)
    assert len(built) == len(drugs.build(PRODUCT, PACKAGE))  # no NDC lost
    assert main(["drugs", "import", str(product), str(PACKAGE), "--out", str(out)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "controlled NDCs" in line and "unchanged" in line
    assert out.read_text() == before


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ("0000000000x,,,", "'0000000000x' is not an 11-digit NDC"),
        ("00054457125,CX,,Methadone", "schedule 'CX'"),
        ("00054457125,CII,Kentucky,Methadone", "state 'Kentucky'"),
        ("00093444405,,KY,Gabapentin", "needs its schedule"),
        ("00054457125,CII,,Methadone,extra", "5 columns"),
        ("\u00b9\u00b2345678901,,,", "not an 11-digit NDC"),  # superscripts pass isdigit()
    ],
)
def test_a_bad_directory_row_is_named_never_read_as_something_else(
    tmp_path, capsys, monkeypatch, row, words
):
    text = f"ndc11,schedule,state,product\n00406051201,CII,,Oxycodone\n{row}\n"
    with pytest.raises(drugs.DirectoryError, match="line 3") as caught:
        drugs.parse_directory(text, "KY")
    assert words in str(caught.value)
    with pytest.raises(drugs.DirectoryError, match=words.replace("(", r"\(")):
        drugs.read_list(text)
    # configured as the directory every part reads: one line, exit 2
    monkeypatch.chdir(tmp_path)
    (tmp_path / "directory.csv").write_text(text)
    (tmp_path / "cc.toml").write_text('[adapter]\ndrug_list = "directory.csv"\n')
    assert main(["drugs", "show", "00406051201", "--config", "cc.toml"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("cashcapture: error: [adapter] drug_list: directory.csv line 3")


def test_a_file_that_is_no_directory_is_refused():
    with pytest.raises(drugs.DirectoryError, match="not a drug directory"):
        drugs.parse_directory("ndc,schedule\n00406051201,CII\n", "KY")


def test_a_broken_configured_directory_is_said_and_drugs_import_repairs_it(
    tmp_path, capsys, monkeypatch
):
    """Not UTF-8 (a file saved by a spreadsheet): every command says so in one line, and
    `drugs import`, told --force, writes it whole again (it reads no config's directory)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CASHCAPTURE_DB", raising=False)
    directory = tmp_path / "directory.csv"
    directory.write_bytes(b"ndc11,schedule,state,product\n00054457125,CII,,M\xe9thadone\n")
    (tmp_path / "cc.toml").write_text('[adapter]\ndrug_list = "directory.csv"\n')
    assert main(["drugs", "show", "00054457125", "--config", "cc.toml"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "directory.csv: not UTF-8 text" in line
    argv = ["drugs", "import", str(PRODUCT), str(PACKAGE), "--config", "cc.toml"]
    assert main(argv) == 2  # the one in place cannot be compared: refused without --force
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "the directory in place" in line and "--force" in line
    assert main([*argv, "--force"]) == 0
    capsys.readouterr()
    assert main(["drugs", "show", "00054457125", "--config", "cc.toml"]) == 0
    assert "schedule CII" in capsys.readouterr().out
    directory.unlink()  # gone altogether: drugs import makes it
    assert main(argv) == 0 and directory.is_file()

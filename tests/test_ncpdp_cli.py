"""`cashcapture decode` / `encode` through cli.main in a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _ncpdp_helpers import FIXTURES, fixture

RUN = "import sys, cli; sys.exit(cli.main(sys.argv[1:]))"


def cashcapture(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", RUN, *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_decode_then_encode_gives_the_same_bytes(tmp_path):
    src = FIXTURES / "b1_compound.dat"
    dec = cashcapture("decode", str(src))
    assert dec.returncode == 0, dec.stderr
    d = json.loads(dec.stdout)
    assert d["kind"] == "request" and d["header"]["transaction_code"] == "B1"
    assert d["transactions"][0][2]["id"] == "10"
    (tmp_path / "m.json").write_bytes(dec.stdout)
    enc = cashcapture("encode", str(tmp_path / "m.json"))
    assert enc.returncode == 0 and enc.stdout == fixture("b1_compound.dat")
    enc2 = cashcapture("encode", "-", stdin=dec.stdout)
    assert enc2.stdout == fixture("b1_compound.dat")


def test_decode_names_from_stdin():
    r = cashcapture("decode", "--names", "-", stdin=fixture("resp_paid.dat"))
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "Patient Pay Amount" in out and "= 27.00" in out and "RESPONSE HEADER" in out


@pytest.mark.parametrize(
    "args, stdin, text",
    [
        (("decode", "-"), b"999001D0B1", "not a D.0 message: byte 10"),
        (("decode", "/nonexistent/x.dat"), b"", "cannot read"),
        (("encode", "-"), b"{", "not JSON"),
        (("encode", "-"), b'{"kind": "request", "header": {}}', "missing keys"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, stdin, text):
    r = cashcapture(*args, stdin=stdin)
    err = r.stderr.decode()
    assert r.returncode == 2 and text in err
    assert err.count("\n") == 1 and "Traceback" not in err and r.stdout == b""

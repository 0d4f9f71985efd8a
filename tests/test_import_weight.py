"""What importing the adjudication pulls in (its time is measured by bench/importtime.py)."""

from __future__ import annotations

import json
import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    script = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(out)}


def test_adjudication_imports_neither_sqlalchemy_nor_construct_nor_stdnum():
    loaded = _modules_after("import cashcapture.adapter.adjudicate")
    assert "sqlalchemy" not in loaded
    assert "construct" not in loaded  # the header Structs are built on first use only
    assert "stdnum" not in loaded  # the NPI check imports it on its first call


def test_the_header_structs_still_declare_the_layout_on_demand():
    from ncpdp import header

    structs = header.STRUCTS
    for kind, slots in header.SLOTS.items():
        assert [sub.sizeof() for sub in structs[kind].subcons] == [s.length for _, s in slots]

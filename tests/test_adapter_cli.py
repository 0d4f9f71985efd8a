"""Adapter settings and the serve / send / fills commands."""

from __future__ import annotations

import json
import signal

import pytest
from _adapter_helpers import (
    ROOT,
    ServerProcess,
    b1,
    build,
    free_port,
    load,
    register_pharmacy,
    write_config,
)

from cashcapture.adapter import config
from cli import main


def test_example_config_loads_with_every_section():
    cfg = config.load(ROOT / "fixtures" / "cashcapture.toml")  # the one reference config
    assert [li.framing for li in cfg.listeners] == ["stx", "len2"]
    assert str(cfg.cash[0]) == "999001/CASHONLY" and str(cfg.certification[0]) == "999002"
    assert str(cfg.payers[0].route) == "777001/BLUEPLAN" and cfg.payers[0].timeout == 8.0
    assert cfg.metrics_port == 0 and cfg.commit_max_batch == 256


def test_defaults():
    cfg = config.load(None)
    assert cfg.listeners[0].framing == "stx" and cfg.idle_timeout == 120
    assert cfg.db == "sqlite:///cashcapture.db" and cfg.workers == 1
    payer = config.from_dict({"payers": [{"route": "610014", "host": "h", "port": 1}]}).payers[0]
    assert payer.timeout == 8.0 and payer.route.pcn is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"adapter": {"idle_timout": 3}}, "unknown setting"),
        ({"routes": {"cash": ["12345"]}}, "BIN must be 6 digits"),
        ({"listeners": [{"framing": "mllp"}]}, "unknown framing"),
        ({"listeners": [{"port": 70000}]}, "out of range"),
        ({"routes": {"cash": ["999001"], "certification": ["999001"]}}, "both"),
        ({"payers": [{"route": "610014", "host": "h"}]}, "port is required"),
        ({"adapter": {"workers": "2"}}, "must be int"),
        ({"adapter": {"max_message_size": 1_000_000_000}}, "56 .one header. to 65535"),
        ({"adapter": {"max_message_size": 55}}, "56 .one header. to 65535"),
    ],
)
def test_bad_settings_are_named(data, message):
    with pytest.raises(config.ConfigError, match=message):
        config.from_dict(data)


def test_overrides():
    cfg = config.override(
        config.load(None), db="sqlite:///x.db", port=6000, cash_bins=("999001/CASH",), workers=2
    )
    assert cfg.db == "sqlite:///x.db" and cfg.listeners[0].port == 6000 and cfg.workers == 2
    assert str(cfg.cash[0]) == "999001/CASH"


def test_serve_bad_config_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[adapter]\nidle_timeout = [")
    assert main(["serve", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not valid TOML" in err[0]
    assert main(["serve", "--cash-bin", "12"]) == 2
    capsys.readouterr()
    huge = tmp_path / "huge.toml"
    huge.write_text("[adapter]\nmax_message_size = 1000000000\n")
    assert main(["serve", "--config", str(huge)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_message_size" in err[0]


def test_send_to_nobody_is_exit_2(tmp_path, capsys):
    f = tmp_path / "claim.dat"
    f.write_bytes(load("b1_cash.dat"))
    assert main(["send", str(f), "--port", str(free_port())]) == 2
    assert "cannot connect" in capsys.readouterr().err


def test_send_and_fills_against_a_running_server(tmp_path, capsys):
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    register_pharmacy(db_url)
    port = free_port()
    server = ServerProcess(write_config(tmp_path, db_url, port), tmp_path / "serve.log")
    server.wait_listening()
    claim = tmp_path / "b1.dat"
    claim.write_bytes(build(b1(rx=8001)))
    as_json = tmp_path / "b1.json"
    import ncpdp

    as_json.write_text(json.dumps(ncpdp.to_json(b1(rx=8002))))
    try:
        assert main(["send", str(claim), str(as_json), "--port", str(port), "--json"]) == 0
        out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [o["kind"] for o in out] == ["response", "response"]
        assert ["AN", "P"] in out[1]["transactions"][0][0]["fields"]
        assert main(["send", str(claim), "--port", str(port), "--framing", "stx"]) == 0
        text = capsys.readouterr().out
        assert "status D" in text and "patient pays 27.00" in text
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert main(["fills", "--db", db_url, "--json", "--date", "2024-03-15"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["rx_number"] for r in rows) == ["8001", "8002"]
    assert "HOLLOWAY" not in json.dumps(rows)
    assert main(["fills", "--db", db_url, "--pharmacy", "FP1234563"]) == 0
    assert "2 fill(s)" in capsys.readouterr().out
    assert main(["fills", "--db", db_url, "--date", "yesterday"]) == 2

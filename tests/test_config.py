"""One config file for every part: the adapter's sections and the extract's, side by side."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from cashcapture.adapter import config
from extract import settings as extract_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "cashcapture.toml"
_COMMENTED_KEY = re.compile(r"^#\s*([a-z_]+)\s*=", re.M)


def _keys(path: Path) -> dict[str, set[str]]:
    """Section -> keys written in the file, set or commented out (`# key = ...`)."""
    text = path.read_text()
    out: dict[str, set[str]] = {}
    for section, body in tomllib.loads(text).items():
        tables = body if isinstance(body, list) else [body]
        out[section] = {k for t in tables for k in t}
    out["adapter"] |= set(_COMMENTED_KEY.findall(text))
    return out


def test_adapter_accepts_the_extract_sections_as_another_part_s():
    cfg = config.from_dict(
        {
            "adapter": {"state": "KY"},
            "extract": {"zero_reports": "weekly", "anything": "the extract checks it"},
            "sftp": {"host": "collector.example", "port": 2222},
        }
    )
    assert cfg.state == "KY"
    assert config.SECTIONS["extract"] == config.SECTIONS["sftp"] == "extract"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"extrat": {}}, "unknown section(s) in config: extrat (known: adapter, listeners"),
        ({"adapter": {"stat": "KY"}}, "unknown setting(s) in [adapter]: stat"),
        ({"routes": {"cash": [], "insured": []}}, "unknown setting(s) in [routes]: insured"),
    ],
)
def test_truly_unknown_keys_are_still_refused(data, message):
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.from_dict(data)


def test_example_file_is_read_by_the_adapter_and_the_extract():
    cfg = config.load(EXAMPLE)
    settings = extract_settings.load(EXAMPLE)
    assert [str(r) for r in cfg.cash] == ["999001/CASHONLY"]
    assert [(p.host, p.port) for p in cfg.payers] == [("127.0.0.1", 6010)]
    assert [listener.framing for listener in cfg.listeners] == ["stx", "len2"]
    assert settings.sftp.host == "sftp.example.org"
    assert settings.outbox_dir() == EXAMPLE.parent.resolve() / "outbox"


def test_example_file_covers_every_setting():
    keys = _keys(EXAMPLE)
    # Config fields read from another section (metadata "from": "section.key", or a whole
    # section) are that section's: the counter takes the file's profile from [extract]
    # and the other states' profiles from [states].
    borrowed = {f.name: f.metadata["from"] for f in dataclasses.fields(config.Config)
                if "from" in f.metadata}  # fmt: skip
    assert borrowed == {"extract_profile": "extract.profile", "states": "states"}
    for source in borrowed.values():
        section, _, key = source.partition(".")
        assert key in keys[section] if key else section in keys
    assert keys["adapter"] == {f.name for f in dataclasses.fields(config.Config)} - {
        "listeners", "cash", "certification", "payers", *borrowed,
    }  # fmt: skip
    assert keys["listeners"] == {f.name for f in dataclasses.fields(config.Listener)}
    assert keys["routes"] == {"cash", "certification"}
    assert keys["payers"] == {f.name for f in dataclasses.fields(config.PayerRoute)}
    assert keys["extract"] == {f.name for f in dataclasses.fields(extract_settings.ExtractSettings)}
    assert keys["sftp"] == {f.name for f in dataclasses.fields(extract_settings.SftpSettings)}
    assert set(keys) == set(config.SECTIONS)


def test_example_values_not_marked_example_are_the_defaults():
    cfg = config.load(EXAMPLE)
    default = config.Config()
    for f in dataclasses.fields(config.Config):
        if f.metadata.get("from") == "states":  # the example names none
            assert getattr(cfg, f.name) == (), f.name
        elif "from" in f.metadata:  # read from [extract]: that section's default
            _, key = f.metadata["from"].split(".")
            want = getattr(extract_settings.ExtractSettings(), key)
            assert getattr(cfg, f.name) == want, f.name
        elif f.name not in ("listeners", "cash", "certification", "payers"):
            assert getattr(cfg, f.name) == getattr(default, f.name), f.name
    assert cfg.listeners[0] == config.Listener()
    assert cfg.payers[0].framing == "stx"
    assert cfg.payers[0].timeout == config.DEFAULT_UPSTREAM_TIMEOUT
    assert cfg.payers[0].payment_type == "other" and cfg.payers[0].dsp16 == "99"
    assert extract_settings.load(EXAMPLE).extract == extract_settings.ExtractSettings()
    sftp = extract_settings.load(EXAMPLE).sftp
    examples = {"host", "user", "key", "known_hosts"}
    assert {f.name for f in dataclasses.fields(sftp) if getattr(sftp, f.name) != getattr(
        extract_settings.SftpSettings(), f.name)} == examples  # fmt: skip


def test_payer_payment_type_names_a_dsp16_class():
    from cashcapture.core.pmp.asap import table

    base = {"route": "777001", "host": "127.0.0.1", "port": 6010}
    for name, code in (("medicaid", "02"), ("medicare", "03"), ("military_va", "05"),
                       ("indian_nations", "07"), ("other", "99")):  # fmt: skip
        cfg = config.from_dict({"payers": [dict(base, payment_type=name)]})
        assert cfg.payers[0].dsp16 == code
    with pytest.raises(config.ConfigError, match="payment_type must be one of"):
        config.from_dict({"payers": [dict(base, payment_type="04")]})
    # the names cover the ASAP code list of DSP16, nothing more
    from cashcapture.core.pmp.records import PAYMENT_TYPES

    assert set(PAYMENT_TYPES.values()) == set(table("4.1").by_id["DSP16"].codes)

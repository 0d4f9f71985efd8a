# ruff: noqa: F811
"""Packaged delivery: zip and PGP files on a real SFTP server, decrypted by the real
`gpg` where installed; keys that cannot encrypt are refused before anything is sent;
a packaged file interrupted by SIGKILL goes exactly once, under the name it started with."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import pytest
from _extract_helpers import TODAY, good_fill, pharmacies, sessions, settings  # noqa: F401
from _gpg import GPG, gpg_home
from _sftp_server import remote_files, sftp_server  # noqa: F401
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from test_submit_kill import kill_when_paused, run_submit

import cli
from cashcapture.core.store import Submission
from extract import packaging
from extract.daily import extract


@pytest.fixture(scope="module")
def collector_key(tmp_path_factory) -> tuple[Path, str]:
    """(public key file, secret key armored): the collector's pair, made by our library."""
    public, secret = packaging.generate_key_pair("KASPER test collector <pmp@example.org>")
    path = tmp_path_factory.mktemp("keys") / "collector.asc"
    path.write_text(public)
    return path, secret


@given(st.from_regex(r"PMP_[A-Z]{2}_[A-Z0-9]{1,10}_[A-Z0-9]{1,10}_[0-9]{14}\.dat", fullmatch=True))
def test_remote_names_say_how_the_file_went(name):
    for package in packaging.PACKAGES:
        remote = packaging.remote_name(name, package)
        assert packaging.package_of(remote) == package
        assert packaging.plain_name(remote) == name
    assert packaging.remote_name(name, "zip").endswith(".zip")
    assert packaging.remote_name(name, "pgp") == name + ".pgp"


def _delivered(sessions, tmp_path, sftp_server, *, package: str, key: Path | None = None):
    with sessions.begin() as s:
        ph = pharmacies(s)
        good_fill(s, ph["solo"], "A1")
        good_fill(s, ph["chain1"], "C1")
    cfg = tmp_path / "cc.toml"
    extra = f'package = "{package}"\n' + (f'pgp_public_key = "{key}"\n' if key else "")
    cfg.write_text(
        '[extract]\ntimezone = "UTC"\nzero_reports = "off"\n\n' + sftp_server.info.toml() + extra
    )
    result = extract(sessions, settings(tmp_path, zero_reports="off"), TODAY)
    return cfg, [f.name for f in result.files]  # delivery order


def test_zip_delivers_name_zip_holding_name_dat(
    sessions, tmp_path, sftp_server, migrated_db_url, capsys
):
    cfg, names = _delivered(sessions, tmp_path, sftp_server, package="zip")
    assert cli.main(["submit", "--db", migrated_db_url, "--config", str(cfg)]) == 0
    assert remote_files(sftp_server) == sorted(n.removesuffix(".dat") + ".zip" for n in names)
    for name in names:
        remote = sftp_server.root / (name.removesuffix(".dat") + ".zip")
        with zipfile.ZipFile(io.BytesIO(remote.read_bytes())) as z:
            assert z.namelist() == [name]
            assert z.read(name) == (tmp_path / "outbox" / name).read_bytes()  # outbox: plain
    assert "uploaded    PMP_KY_" in capsys.readouterr().out
    with sessions() as s:
        paths = {sub.remote_path for sub in s.scalars(select(Submission))}
    assert paths == {"/" + n.removesuffix(".dat") + ".zip" for n in names}


def test_pgp_delivers_name_dat_pgp_that_decrypts_to_the_file(
    sessions, tmp_path, sftp_server, migrated_db_url, collector_key
):
    public, secret = collector_key
    cfg, names = _delivered(sessions, tmp_path, sftp_server, package="pgp", key=public)
    assert cli.main(["submit", "--db", migrated_db_url, "--config", str(cfg)]) == 0
    assert remote_files(sftp_server) == sorted(n + ".pgp" for n in names)
    for name in names:
        sent = (sftp_server.root / (name + ".pgp")).read_bytes()
        assert b"TH*" not in sent  # nothing readable on the wire or at rest
        plain = (tmp_path / "outbox" / name).read_bytes()
        assert packaging.unpack(name + ".pgp", sent, secret) == (name, plain)


@pytest.mark.skipif(GPG is None, reason="the gpg binary is not installed on this machine")
def test_gpg_decrypts_what_we_encrypt_to_its_own_key(tmp_path):
    """Interoperability both ways round: a key gpg made, a message PGPy made."""
    asap = b"TH*4.2*PMP_KY_X_1_20261204010203*01**20261205*010203*P**~~TT*X*2~"
    public, secret = packaging.generate_key_pair("Demo collector <demo@example.org>")
    (tmp_path / "demo.asc").write_text(public)
    with gpg_home(tmp_path) as gpg:
        gpg("--quick-gen-key", "State PMP <pmp@ky.example>", "default", "default", "never")
        (tmp_path / "state.gpg").write_bytes(gpg("--export", "pmp@ky.example"))  # binary key
        key = packaging.load_public_key(tmp_path / "state.gpg")
        assert gpg("--decrypt", data=key.encrypt(asap)) == asap
        # and gpg reads the secret key our library makes (the demo writes one)
        gpg("--import", data=secret.encode())
        message = packaging.load_public_key(tmp_path / "demo.asc").encrypt(asap)
        assert gpg("--decrypt", data=message) == asap


def _pgpy_key(path: Path, name: str, usage: str, *, expired=False, revoked=False) -> Path:
    """A public key file made with PGPy: `usage` "encrypt" or "sign"; expired (made 400
    days ago, valid 30) or revoked when asked."""
    import warnings

    with warnings.catch_warnings():  # PGPy imports imghdr (deprecated)
        warnings.simplefilter("ignore")
        import pgpy
        from pgpy.constants import HashAlgorithm, KeyFlags, PubKeyAlgorithm, RevocationReason

        created = dt.datetime.now(dt.UTC) - dt.timedelta(days=400 if expired else 0)
        key = pgpy.PGPKey.new(PubKeyAlgorithm.RSAEncryptOrSign, 2048, created=created)
        flags = {KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage}
        key.add_uid(
            pgpy.PGPUID.new(name),
            usage={KeyFlags.Certify, *flags} if usage == "encrypt" else {KeyFlags.Sign},
            hashes=[HashAlgorithm.SHA256],
            key_expiration=dt.timedelta(days=30) if expired else None,
        )
        if revoked:
            key |= key.revoke(key, reason=RevocationReason.Retired)
        path.write_text(str(key.pubkey))
    return path


def _expired_key(path: Path) -> Path:
    return _pgpy_key(path, "Old collector", "encrypt", expired=True)


def _signing_only_key(path: Path) -> Path:
    return _pgpy_key(path, "Signer", "sign")


def _revoked_key(path: Path) -> Path:
    return _pgpy_key(path, "Retired", "encrypt", revoked=True)


@pytest.mark.parametrize(
    "make, words",
    [
        (_signing_only_key, "cannot encrypt"),
        (_expired_key, "has expired"),
        (_revoked_key, "is revoked"),
        (lambda p: (p.write_text("hello"), p)[1], "not an OpenPGP key"),
        (lambda p: p, "No such file"),
    ],
)
def test_a_key_that_cannot_encrypt_is_refused_before_anything_is_sent(
    sessions, tmp_path, sftp_server, migrated_db_url, capsys, make, words
):
    key = make(tmp_path / "bad.asc")
    cfg, _ = _delivered(sessions, tmp_path, sftp_server, package="pgp", key=key)
    assert cli.main(["submit", "--db", migrated_db_url, "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and err[0].startswith("cashcapture: error: [sftp]")
    assert remote_files(sftp_server) == []
    with sessions() as s:
        assert {sub.state for sub in s.scalars(select(Submission))} == {"written"}


def test_a_secret_key_given_for_the_public_one_is_refused(tmp_path, collector_key):
    _, secret = collector_key
    (tmp_path / "secret.asc").write_text(secret)
    with pytest.raises(packaging.KeyError_, match="a secret key; give the collector's public"):
        packaging.load_public_key(tmp_path / "secret.asc")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after-upload", "after-rename"])
def test_killed_mid_pgp_delivery_goes_once_under_the_name_it_started_with(
    sessions, tmp_path, sftp_server, migrated_db_url, collector_key, point
):
    public, secret = collector_key
    cfg, names = _delivered(sessions, tmp_path, sftp_server, package="pgp", key=public)
    pause_file = tmp_path / "paused"
    proc = run_submit(migrated_db_url, cfg, point, pause_file)
    kill_when_paused(proc, pause_file)
    first = names[0] + ".pgp"
    assert remote_files(sftp_server) == [first + ".part" if point == "after-upload" else first]
    # the operator switches to zip meanwhile: the interrupted file still goes as it began
    cfg.write_text(cfg.read_text().replace('package = "pgp"', 'package = "zip"'))
    rerun = run_submit(migrated_db_url, cfg)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()
    second = names[1].removesuffix(".dat") + ".zip"
    assert remote_files(sftp_server) == sorted([first, second])
    sent = (sftp_server.root / first).read_bytes()
    assert packaging.unpack(first, sent, secret)[1] == (tmp_path / "outbox" / names[0]).read_bytes()
    with sessions() as s:
        assert {sub.state for sub in s.scalars(select(Submission))} == {"uploaded"}

"""How a written ASAP file travels: as it is, zipped, or PGP-encrypted to the collector.

Kentucky takes the `.dat` as it is, zipped, or encrypted with the state's public
key (its upload FAQ). Packing happens at delivery, from the plain file the
outbox keeps (so `cashcapture validate` still reads it); the remote name tells
what was sent, so a re-run after a crash looks for the same name and packs the
same way. PGP uses PGPy (pure Python on `cryptography`): its keys and messages
are OpenPGP v4 with the SEIPD v1 packet every gpg reads.
"""

from __future__ import annotations

import functools
import io
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

PACKAGES = ("none", "zip", "pgp")
_SUFFIX = {"none": "", "zip": ".zip", "pgp": ".pgp"}


class KeyError_(ValueError):
    """The collector's key cannot be used; the message is one line, no key material."""


def remote_name(name: str, package: str) -> str:
    """NAME.dat -> NAME.dat (none), NAME.zip (zip, holding NAME.dat), NAME.dat.pgp (pgp)."""
    if package == "zip":
        return name.removesuffix(".dat") + ".zip"
    return name + _SUFFIX[package]


def package_of(remote: str) -> str:
    """Which packing a remote name says was used (the inverse of `remote_name`)."""
    if remote.endswith(".pgp"):
        return "pgp"
    return "zip" if remote.endswith(".zip") else "none"


def plain_name(remote: str) -> str:
    """The written file's name behind a delivered one (NAME.zip, NAME.dat.pgp -> NAME.dat)."""
    if remote.endswith(".pgp"):
        return remote.removesuffix(".pgp")
    if remote.endswith(".zip"):
        return remote.removesuffix(".zip") + ".dat"
    return remote


def zipped(name: str, data: bytes, when: datetime | None = None) -> bytes:
    """One member, NAME.dat, deflated; the member's time is the file's (or 1980-01-01)."""
    stamp = (when or datetime(1980, 1, 1)).timetuple()[:6]
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(info, data)
    return buf.getvalue()


@contextmanager
def _quiet() -> Iterator[None]:
    """PGPy imports imghdr and calls cryptography APIs that warn of their move (the
    output is unchanged): silence them here, not in the operator's terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@functools.cache
def _pgpy() -> Any:
    """PGPy, imported on first use (a run without PGP never loads it)."""
    with _quiet():
        import pgpy
        import pgpy.constants
    return pgpy


@dataclass(frozen=True)
class PublicKey:
    """A collector's OpenPGP public key, checked able to encrypt."""

    key: Any  # pgpy.PGPKey
    fingerprint: str

    def encrypt(self, data: bytes) -> bytes:
        """An OpenPGP message (binary) holding the file's bytes; the collector names it by
        the delivered name without .pgp (the literal packet carries no name)."""
        pgpy = _pgpy()
        with _quiet():  # binary literal data: the bytes arrive as written, on any platform
            zlib = pgpy.constants.CompressionAlgorithm.ZLIB
            message = pgpy.PGPMessage.new(data, format="b", compression=zlib)
            return bytes(self.key.encrypt(message))


def load_public_key(path: str | Path) -> PublicKey:
    """The key in `path` (armored or binary); KeyError_ with one line when it is not
    a public key that can encrypt now (no encryption subkey, expired, revoked)."""
    pgpy = _pgpy()
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise KeyError_(f"pgp_public_key {path}: {exc.strerror or exc}") from None
    with _quiet():
        try:
            key, _ = pgpy.PGPKey.from_blob(blob)
        except Exception:  # PGPy raises many types on bad input; none must reach the user
            raise KeyError_(f"pgp_public_key {path}: not an OpenPGP key") from None
        if not key.is_public:
            raise KeyError_(f"pgp_public_key {path}: a secret key; give the collector's public key")
        keyid = key.fingerprint.keyid
        if list(key.revocation_signatures):
            raise KeyError_(f"pgp_public_key {path}: key {keyid} is revoked")
        if key.is_expired:
            raise KeyError_(f"pgp_public_key {path}: key {keyid} has expired")
        subkeys = list(key.subkeys.values())
        if subkeys and all(k.is_expired or list(k.revocation_signatures) for k in subkeys):
            raise KeyError_(f"pgp_public_key {path}: key {keyid}: every subkey expired or revoked")
        checked = PublicKey(key, str(key.fingerprint).replace(" ", ""))
        try:
            checked.encrypt(b"")
        except Exception:  # PGPy: PGPError when no key may encrypt (a signing-only key)
            raise KeyError_(
                f"pgp_public_key {path}: key {keyid} cannot encrypt (a signing-only key?)"
            ) from None
        return checked


@dataclass(frozen=True)
class Packer:
    """Packs written files for one delivery run."""

    package: str
    key: PublicKey | None = None

    def remote_name(self, name: str) -> str:
        return remote_name(name, self.package)

    def pack(self, remote: str, name: str, data: bytes, when: datetime | None = None) -> bytes:
        """The bytes sent under `remote`, packed as that name says (not as configured now:
        a file interrupted mid-delivery goes again as it started)."""
        kind = package_of(remote)
        if kind == "zip":
            return zipped(name, data, when)
        if kind == "pgp":
            if self.key is None:
                raise KeyError_(f"{remote}: its delivery started PGP-encrypted; set pgp_public_key")
            return self.key.encrypt(data)
        return data


def generate_key_pair(user_id: str) -> tuple[str, str]:
    """(public, secret) armored: an Ed25519 key with a Curve25519 encryption subkey
    (what gpg makes by default), for a collector of our own (the demo's, tests); no
    passphrase. Not RSA: gpg 2.2 fails on about 1 % of messages to RSA keys PGPy
    generates (seen here: 6 of 500), never on Curve25519 ones (0 of 450)."""
    pgpy = _pgpy()
    c = pgpy.constants
    with _quiet():
        key = pgpy.PGPKey.new(c.PubKeyAlgorithm.EdDSA, c.EllipticCurveOID.Ed25519)
        key.add_uid(
            pgpy.PGPUID.new(user_id),
            usage={c.KeyFlags.Certify, c.KeyFlags.Sign},
            hashes=[c.HashAlgorithm.SHA256],
            ciphers=[c.SymmetricKeyAlgorithm.AES256],
            compression=[c.CompressionAlgorithm.ZLIB, c.CompressionAlgorithm.Uncompressed],
        )
        sub = pgpy.PGPKey.new(c.PubKeyAlgorithm.ECDH, c.EllipticCurveOID.Curve25519)
        key.add_subkey(sub, usage={c.KeyFlags.EncryptCommunications, c.KeyFlags.EncryptStorage})
        return str(key.pubkey), str(key)


def decrypt(secret_armored: str, message: bytes) -> bytes:
    """The bytes of a message encrypted to this secret key: what a collector does on
    receipt (the demo's collector checks what it got this way)."""
    pgpy = _pgpy()
    with _quiet():
        key, _ = pgpy.PGPKey.from_blob(secret_armored)
        data = key.decrypt(pgpy.PGPMessage.from_blob(message)).message
        return data.encode("latin-1") if isinstance(data, str) else bytes(data)


def unpack(remote: str, data: bytes, secret_armored: str | None = None) -> tuple[str, bytes]:
    """(NAME.dat, bytes) of a delivered file, whatever its packing (zip: its one member)."""
    kind = package_of(remote)
    if kind == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            [member] = z.namelist()
            return member, z.read(member)
    if kind == "pgp":
        if secret_armored is None:
            raise KeyError_(f"{remote}: PGP-encrypted; the collector's secret key is needed")
        return plain_name(remote), decrypt(secret_armored, data)
    return remote, data

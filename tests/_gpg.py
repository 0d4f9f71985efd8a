"""The real `gpg` binary in a private home: what a collector decrypts with."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

GPG = shutil.which("gpg")
GPGCONF = shutil.which("gpgconf")


@contextmanager
def gpg_home(base: Path) -> Iterator[Callable[..., bytes]]:
    """`run(*args, data=None) -> stdout` against a fresh GNUPGHOME; its agent is started
    before the first command and stopped after the last, so no test shares or leaks one."""
    assert GPG is not None
    home = base / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}

    def run(*args: str, data: bytes | None = None) -> bytes:
        done = subprocess.run(
            [GPG, "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "", *args],
            input=data, capture_output=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"gpg {args[0]}: {done.stderr.decode(errors='replace')}"
        return done.stdout

    if GPGCONF:
        subprocess.run([GPGCONF, "--launch", "gpg-agent"], env=env, check=False, timeout=30)
    try:
        yield run
    finally:
        if GPGCONF:
            subprocess.run([GPGCONF, "--kill", "gpg-agent"], env=env, check=False, timeout=30)

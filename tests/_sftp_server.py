"""Fixtures around the package's loopback SFTP server (extract.sftp_server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from extract.settings import Settings, SftpSettings
from extract.sftp_server import LoopbackSftpServer


@pytest.fixture
def sftp_server(tmp_path: Path) -> Iterator[LoopbackSftpServer]:
    """A running SFTP server on 127.0.0.1 serving tmp_path/collector."""
    server = LoopbackSftpServer(tmp_path / "collector", tmp_path / "keys")
    server.start()
    yield server
    server.stop()


def sftp_settings(server: LoopbackSftpServer, **overrides) -> SftpSettings:
    info = server.info
    assert info is not None
    values = dict(
        host=info.host,
        port=info.port,
        user=info.user,
        key=str(info.client_key),
        host_key=info.host_key,
        remote_dir="/",
        backoff=0.01,
        retries=4,
        timeout=10.0,
    )
    values.update(overrides)
    return SftpSettings(**values)


def settings_for(server: LoopbackSftpServer, base: Path, **sftp_overrides) -> Settings:
    return Settings(sftp=sftp_settings(server, **sftp_overrides), base_dir=base)


def remote_files(server: LoopbackSftpServer) -> list[str]:
    """Names in the collector's folder (what the state would pick up)."""
    return sorted(p.name for p in server.root.iterdir())

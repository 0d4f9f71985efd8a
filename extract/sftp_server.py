"""A real SFTP server on loopback, for tests and the demo.

It stands in for the state's collector: asyncssh serving one folder (chroot),
a generated host key, and exactly one authorised client key. It runs its own
event loop in a thread so synchronous tests, subprocesses and the demo can all
talk to it over a real TCP socket. `drop_connections` makes the first N
connections fail right after accept, a network fault for the retry tests.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh


@dataclass
class SftpServerInfo:
    """Everything a client needs: where, who, which key, which host key."""

    host: str
    port: int
    user: str
    client_key: Path
    host_key: str  # pinned public host key, OpenSSH one-line form
    root: Path
    remote_dir: str = "/"

    def toml(self) -> str:
        """The `[sftp]` config section pointing at this server."""
        return (
            "[sftp]\n"
            f'host = "{self.host}"\n'
            f"port = {self.port}\n"
            f'user = "{self.user}"\n'
            f'key = "{self.client_key}"\n'
            f'host_key = "{self.host_key}"\n'
            f'remote_dir = "{self.remote_dir}"\n'
        )


@dataclass
class _State:
    drop_connections: int = 0
    accepted: int = 0
    dropped: int = 0
    auth_ok: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(asyncssh.SSHServer):
    def __init__(self, state: _State) -> None:
        self._state = state

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        with self._state.lock:
            self._state.accepted += 1
            drop = self._state.dropped < self._state.drop_connections
            if drop:
                self._state.dropped += 1
        if drop:
            conn.abort()

    def auth_completed(self) -> None:
        with self._state.lock:
            self._state.auth_ok += 1


def generate_keys(folder: Path) -> tuple[Path, Path]:
    """Write a host key and a client key pair into `folder`; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    host = folder / "ssh_host_ed25519_key"
    client = folder / "client_ed25519_key"
    for path in (host, client):
        if not path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519")
            key.write_private_key(str(path))
            key.write_public_key(str(path) + ".pub")
            path.chmod(0o600)
    return host, client


class LoopbackSftpServer:
    """Start with `start()` (or as a context manager), stop with `stop()`."""

    def __init__(
        self,
        root: Path,
        keys_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "cashcapture",
        drop_connections: int = 0,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._host_key_path, self._client_key_path = generate_keys(Path(keys_dir))
        self._host, self._port, self._user = host, port, user
        self._state = _State(drop_connections=drop_connections)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self.info: SftpServerInfo | None = None

    # -- fault control, read by tests ----------------------------------------
    @property
    def accepted(self) -> int:
        return self._state.accepted

    @property
    def dropped(self) -> int:
        return self._state.dropped

    def drop_next(self, n: int) -> None:
        """Fail the next `n` connections right after accept."""
        with self._state.lock:
            self._state.drop_connections = self._state.dropped + n

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> SftpServerInfo:
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # noqa: BLE001 - handed to start()
                error.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name="sftp-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if error:
            raise error[0]
        assert self.info is not None
        return self.info

    async def _listen(self) -> None:
        client_pub = asyncssh.read_public_key(str(self._client_key_path) + ".pub")
        root = str(self.root).encode()
        self._acceptor = await asyncssh.listen(
            self._host,
            self._port,
            server_factory=lambda: _Server(self._state),
            server_host_keys=[str(self._host_key_path)],
            authorized_client_keys=asyncssh.import_authorized_keys(
                client_pub.export_public_key().decode()
            ),
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=root),
            allow_scp=False,
        )
        port = self._acceptor.sockets[0].getsockname()[1]
        host_pub = asyncssh.read_public_key(str(self._host_key_path) + ".pub")
        self.info = SftpServerInfo(
            host=self._host,
            port=port,
            user=self._user,
            client_key=self._client_key_path,
            host_key=host_pub.export_public_key().decode().strip(),
            root=self.root,
        )

    async def _close(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop = None

    def __enter__(self) -> SftpServerInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:  # pragma: no cover - manual / demo use
    """`python -m extract.sftp_server ROOT KEYS`: serve until interrupted."""
    import sys
    import time

    root, keys = Path(sys.argv[1]), Path(sys.argv[2])
    server = LoopbackSftpServer(root, keys)
    info = server.start()
    print(info.toml(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()

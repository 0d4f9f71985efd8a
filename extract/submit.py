"""Deliver written ASAP files to the collector by SFTP, exactly once.

The delivery state lives in the database, on the Submission row:

    written --(commit)--> uploading --upload temp, rename to final, commit--> uploaded

Each arrow is committed before the step after it starts, so a process killed
anywhere leaves a state a re-run can finish. On restart an `uploading` file is
looked up on the server: its final name present means the rename happened and
only the commit was lost (mark it uploaded, never send it again); otherwise the
temporary copy, whole or partial, is overwritten and renamed. The collector only
ever sees complete files under their final name, and the fills of a file are
marked reported in the same transaction that records it as uploaded.

Network faults (refused, reset, timeout, lost channel) are retried with
exponential backoff; an unknown or changed host key and a refused login are not.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session, sessionmaker

from cashcapture.core.states import SubmissionState, submission_move
from cashcapture.core.store.engine import writer_engine
from cashcapture.core.store.models import (
    Submission,
)
from cashcapture.core.store.repo import IN_FLIGHT, mark_fills_reported
from cashcapture.core.store.types import utcnow
from extract.packaging import KeyError_, Packer, load_public_key
from extract.settings import Settings, SettingsError, SftpSettings

CHUNK = 256 * 1024


class SubmitError(RuntimeError):
    """Delivery could not finish; the message is one line without patient data."""


class Refused(SubmitError):
    """Not a network fault: wrong host key, login refused, remote folder missing."""


class _FileProblem(Exception):
    """This one file cannot go (e.g. its local copy is gone); the others still can."""


class _NetworkDown(Exception):
    """Retries exhausted: stop this run, leave every remaining file pending."""


NETWORK_FAULTS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncssh.ConnectionLost,
    asyncssh.SFTPConnectionLost,
    asyncssh.DisconnectError,
)


#: Fault-injection seam: called at each named step of a delivery ("before-upload",
#: "after-upload", "after-rename", "after-commit"). Does nothing in production; the
#: kill tests install a hook that stops the process there for a SIGKILL.
def _no_fault(step: str) -> None:
    pass


checkpoint: Callable[[str], None] = _no_fault


@dataclass
class SubmitResult:
    uploaded: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # found already renamed on the server
    failed: dict[str, str] = field(default_factory=dict)
    retries: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def _resolve(base: Path, value: str) -> str:
    return str((base / value).expanduser()) if value else ""


def connect_options(sftp: SftpSettings, base_dir: Path) -> dict:
    """asyncssh.connect keyword arguments: key auth only, the server key pinned."""
    if not sftp.host:
        raise SettingsError("[sftp] host is not set")
    if not sftp.user:
        raise SettingsError("[sftp] user is not set")
    key = _resolve(base_dir, sftp.key)
    if not key or not os.path.isfile(key):
        raise SettingsError(f"[sftp] key: private key file {key or '(unset)'} not found")
    if sftp.host_key:
        try:
            pinned = asyncssh.import_public_key(sftp.host_key)
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise SettingsError("[sftp] host_key is not an OpenSSH public key line") from exc
        known_hosts: object = ([pinned], [], [])
    elif sftp.known_hosts:
        path = _resolve(base_dir, sftp.known_hosts)
        if not os.path.isfile(path):
            raise SettingsError(f"[sftp] known_hosts file {path} not found")
        known_hosts = path
    else:
        raise SettingsError("[sftp] host_key or known_hosts must pin the server's key")
    return {
        "host": sftp.host,
        "port": sftp.port,
        "username": sftp.user,
        "client_keys": [key],
        "known_hosts": known_hosts,
        "agent_path": None,
        "password": None,
        "kbdint_auth": False,
        "preferred_auth": "publickey",
        "config": None,
        "connect_timeout": sftp.timeout,
    }


@contextmanager
def writing(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A write transaction that takes SQLite's write lock up front (BEGIN IMMEDIATE).

    The adapter commits captures all the time; a transaction that reads first
    and writes later could otherwise fail on a stale snapshot instead of waiting.
    """
    with sessions(bind=writer_engine(sessions.kw["bind"])) as session, session.begin():
        yield session


def pending_ids(session: Session) -> list[int]:
    """Submissions still to deliver, oldest first."""
    rows = session.scalars(
        select(Submission.id).where(Submission.state.in_(IN_FLIGHT)).order_by(Submission.id)
    )
    return list(rows)


def mark_uploaded(session: Session, submission_id: int) -> None:
    """Record the file as on the server and its fills as reported: one transaction.

    The store's `mark_fills_reported` holds the delivery rule: a fill changed
    while its file was in flight stays queued (revised: a 01; voided after a
    00 or 01 went: the 02).
    """
    now = utcnow()
    mark_fills_reported(session, submission_id, now)
    session.execute(
        update(Submission)
        .where(and_(Submission.id == submission_id, Submission.state.in_(IN_FLIGHT)))
        .values(state="uploaded", uploaded_at=now, last_error=None)
    )


class _Delivery:
    """One submit run: a connection that is reopened after faults."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        progress: Callable[[str], None] | None,
        sleep: Callable[[float], Awaitable[object]],
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.sftp_cfg = settings.sftp
        self.options = connect_options(settings.sftp, settings.base_dir)
        self.progress = progress or (lambda _name: None)
        self.sleep = sleep
        self.result = SubmitResult()
        self.packer = packer(settings)  # a key that cannot encrypt: refused before connecting
        self.folder = settings.remote_folder()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None

    async def client(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            try:
                self._conn = await asyncssh.connect(**self.options)
            except asyncssh.HostKeyNotVerifiable as exc:
                raise Refused(
                    f"host key of {self.sftp_cfg.host}:{self.sftp_cfg.port} is not the pinned "
                    "key (unknown or changed); refusing to send"
                ) from exc
            except asyncssh.PermissionDenied as exc:
                raise Refused(
                    f"login as {self.sftp_cfg.user} on {self.sftp_cfg.host} refused (key auth)"
                ) from exc
            self._sftp = await self._conn.start_sftp_client()
        return self._sftp

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.abort() if self._sftp is None else self._conn.close()
            try:
                await asyncio.wait_for(self._conn.wait_closed(), 5)
            except (TimeoutError, *NETWORK_FAULTS):  # type: ignore[misc]
                pass
        self._conn = self._sftp = None

    async def run(self, ids: list[int]) -> SubmitResult:
        try:
            for sid in ids:
                await self.deliver_with_retries(sid)
        except _NetworkDown:
            pass  # the rest stay pending for the next run; result.failed says why
        finally:
            await self.close()
        return self.result

    async def deliver_with_retries(self, sid: int) -> None:
        delay = self.sftp_cfg.backoff
        for attempt in range(1, self.sftp_cfg.retries + 1):
            try:
                await self.deliver(sid)
                return
            except Refused:
                raise
            except _FileProblem as exc:
                self._fail(sid, str(exc))
                return
            except asyncssh.SFTPError as exc:
                if isinstance(exc, asyncssh.SFTPConnectionLost):
                    fault: BaseException = exc
                else:  # the server answered: not a network fault, retrying won't help
                    self._fail(sid, f"SFTP error: {exc.reason}")
                    return
            except NETWORK_FAULTS as exc:
                fault = exc
            await self.close()
            self._note_error(sid, f"network fault: {type(fault).__name__}: {fault}")
            if attempt == self.sftp_cfg.retries:
                self._fail(
                    sid, f"gave up after {attempt} attempts (network fault: {type(fault).__name__})"
                )
                raise _NetworkDown from fault
            self.result.retries += 1
            await self.sleep(delay)
            delay *= 2

    def _note_error(self, sid: int, message: str) -> None:
        with writing(self.sessions) as s:
            s.execute(update(Submission).where(Submission.id == sid).values(last_error=message))

    def _fail(self, sid: int, message: str) -> None:
        self._note_error(sid, message)
        with self.sessions() as s:
            name = s.get_one(Submission, sid).file_name
        self.result.failed[name] = message

    async def deliver(self, sid: int) -> None:
        with writing(self.sessions) as s:
            sub = s.get_one(Submission, sid)
            name, state, local, content = sub.file_name, sub.state, sub.path, sub.content
            created = sub.created_at
            if state not in IN_FLIGHT:
                return  # another run finished it
            if state == SubmissionState.WRITTEN:
                sub.state = submission_move(state, SubmissionState.UPLOADING)
            if sub.remote_path is None:  # fixed once: a re-run sends the same name, packed alike
                sub.remote_path = posixpath.join(self.folder, self.packer.remote_name(name))
            final = sub.remote_path
            sub.attempts += 1
        temp = final + self.sftp_cfg.temp_suffix
        sftp = await self.client()
        if state == "uploading" and await sftp.exists(final):
            # Renamed before a crash; only the commit was lost.
            with writing(self.sessions) as s:
                mark_uploaded(s, sid)
            self.result.recovered.append(posixpath.basename(final))
            self.progress(name)
            return
        if content is None:  # a file recorded by path only
            if not local or not os.path.isfile(local):
                raise _FileProblem(f"local file {local} is missing; cannot deliver")
            with open(local, "rb") as fh:
                content = fh.read()
        try:
            content = self.packer.pack(final, name, content, created)
        except KeyError_ as exc:
            raise _FileProblem(str(exc)) from None
        checkpoint("before-upload")
        await self._upload(sftp, content, temp)
        checkpoint("after-upload")
        try:
            await sftp.posix_rename(temp, final)
        except asyncssh.SFTPOpUnsupported:  # pragma: no cover - servers without the extension
            await sftp.rename(temp, final)
        checkpoint("after-rename")
        with writing(self.sessions) as s:
            mark_uploaded(s, sid)
        checkpoint("after-commit")
        self.result.uploaded.append(posixpath.basename(final))
        self.progress(name)

    @staticmethod
    async def _upload(sftp: asyncssh.SFTPClient, content: bytes, temp: str) -> None:
        size = len(content)
        async with sftp.open(temp, "wb") as remote:
            for offset in range(0, size, CHUNK):
                await remote.write(content[offset : offset + CHUNK])
            try:
                await remote.fsync()
            except asyncssh.SFTPOpUnsupported:  # pragma: no cover - server without fsync
                pass
        remote_size = (await sftp.stat(temp)).size
        if remote_size != size:
            raise asyncssh.SFTPConnectionLost(f"short upload: {remote_size} of {size} bytes")


async def _asleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def packer(settings: Settings) -> Packer:
    """The run's packer; a PGP key that cannot encrypt is refused (one line) here,
    before anything is sent."""
    package = settings.package()
    key = None
    if settings.sftp.pgp_public_key:
        try:
            key = load_public_key(_resolve(settings.base_dir, settings.sftp.pgp_public_key))
        except KeyError_ as exc:
            raise SettingsError(f"[sftp] {exc}") from None
    return Packer(package, key)


def submit(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    progress: Callable[[str], None] | None = None,
    sleep: Callable[[float], Awaitable[object]] = _asleep,
) -> SubmitResult:
    """Deliver every written or interrupted file, each to its state's collector; safe to
    re-run at any time. A state whose collector refuses us (host key, login, a PGP key
    that cannot encrypt, no profile) keeps its files queued; the other states' still go."""
    with sessions() as s:
        ids = pending_ids(s)
        by_state = _by_state(s, ids, settings.extract.report_state)
    if not ids:
        return SubmitResult()
    if list(by_state) == [settings.extract.report_state]:  # one collector: refusals stop the run
        return asyncio.run(_Delivery(sessions, settings, progress, sleep).run(ids))
    result = SubmitResult()
    for state, state_ids in by_state.items():
        try:
            part = asyncio.run(
                _Delivery(sessions, settings.for_state(state), progress, sleep).run(state_ids)
            )
        except (Refused, SettingsError) as exc:
            with sessions() as s:
                names = s.scalars(select(Submission.file_name).where(Submission.id.in_(state_ids)))
                result.failed.update({name: f"{state}: {exc}" for name in names})
            continue
        result.uploaded += part.uploaded
        result.recovered += part.recovered
        result.failed.update(part.failed)
        result.retries += part.retries
    return result


def _by_state(session: Session, ids: list[int], home: str) -> dict[str, list[int]]:
    """Pending files by the state they go to (a file from before several states: home)."""
    rows = session.execute(
        select(Submission.id, Submission.pmp_state).where(Submission.id.in_(ids))
    )
    state_of = {sid: state or home for sid, state in rows}
    out: dict[str, list[int]] = {}
    for sid in ids:
        out.setdefault(state_of[sid], []).append(sid)
    return out

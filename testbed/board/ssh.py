"""SSH to a board with paramiko: run commands, pull and push files.

The same class serves an emulated board (dropbear in the image, reached
through QEMU's port forward on 127.0.0.1) and a real board by address.
Files move over the exec channel (``cat``), so the board needs no SFTP
server (dropbear has none).
"""

from __future__ import annotations

import shlex
import socket
import time
from pathlib import Path

import paramiko

from testbed.board.errors import BoardError
from testbed.deadline import Deadline


class SshError(BoardError):
    """The SSH connection or a command over it failed."""


class SshConnection:
    def __init__(
        self,
        host: str,
        port: int = 22,
        *,
        username: str = "root",
        password: str | None = "",
        key_filename: str | None = None,
        known_hosts: str | None = None,
        connect_timeout: float = 20,
    ):
        """Connect (retrying until ``connect_timeout``: a board's dropbear may still be starting).

        ``known_hosts``: a file to verify the host key against (real boards);
        without it an unknown key is accepted, as suits a board made a second ago.
        """
        self.host, self.port, self.username = host, port, username
        host_keys = paramiko.HostKeys(known_hosts) if known_hosts else None
        deadline = Deadline(connect_timeout)
        while True:
            try:
                self.transport = self._connect(host, port, timeout=5)
                break
            except (OSError, paramiko.SSHException, EOFError) as exc:
                if deadline.expired:
                    raise SshError(f"SSH to {host}:{port} did not come up within {connect_timeout} s: {exc}") from exc
                time.sleep(0.2)
        key = self.transport.get_remote_server_key()
        if host_keys is not None:
            name = host if port == 22 else f"[{host}]:{port}"
            known = host_keys.lookup(name) or {}
            if known.get(key.get_name()) != key:
                self.transport.close()
                raise SshError(f"SSH host key of {name} is not the one in {known_hosts}")
        self._authenticate(username, password, key_filename)

    @staticmethod
    def _connect(host: str, port: int, timeout: float) -> paramiko.Transport:
        sock = socket.create_connection((host, port), timeout=timeout)
        transport = paramiko.Transport(sock)
        transport.banner_timeout = 10
        transport.start_client(timeout=timeout + 5)
        return transport

    def _authenticate(self, username: str, password: str | None, key_filename: str | None) -> None:
        t = self.transport
        try:
            if key_filename:
                t.auth_publickey(username, paramiko.PKey.from_path(key_filename))
            elif password == "":
                # dropbear -B lets a user with an empty password in through the "none" method.
                try:
                    t.auth_none(username)
                except paramiko.BadAuthenticationType:
                    t.auth_password(username, "")
            elif password is not None:
                t.auth_password(username, password)
            else:
                raise SshError("SSH: give a password or a key file")
        except paramiko.AuthenticationException as exc:
            t.close()
            raise SshError(f"SSH to {username}@{self.host}:{self.port}: authentication failed: {exc}") from exc
        if not t.is_authenticated():
            t.close()
            raise SshError(f"SSH to {username}@{self.host}:{self.port}: not authenticated")

    def run(self, cmd: str, timeout: float = 30) -> tuple[str, int]:
        """Run a command; (stdout and stderr combined, exit code)."""
        chan = self.transport.open_session(timeout=timeout)
        try:
            chan.settimeout(timeout)
            chan.set_combine_stderr(True)
            chan.exec_command(cmd)
            data = self._read_all(chan, timeout, cmd)
            return data.decode("utf-8", "replace").rstrip("\n"), chan.recv_exit_status()
        finally:
            chan.close()

    @staticmethod
    def _read_all(chan: paramiko.Channel, timeout: float, what: str) -> bytes:
        deadline = Deadline(timeout)
        chunks = []
        while True:
            try:
                chunk = chan.recv(65536)
            except TimeoutError:
                chunk = None
            except socket.timeout:  # noqa: UP041 (paramiko raises the socket alias)
                chunk = None
            if chunk:
                chunks.append(chunk)
            elif chunk == b"":
                return b"".join(chunks)
            if deadline.expired:
                raise SshError(f"{what!r} over SSH did not finish in {timeout} s")

    def pull(self, remote: str, local: str | Path, timeout: float = 60) -> Path:
        """Copy a file from the board to ``local``."""
        local = Path(local)
        chan = self.transport.open_session(timeout=timeout)
        try:
            chan.settimeout(timeout)
            chan.exec_command(f"cat {shlex.quote(remote)}")
            data = self._read_all(chan, timeout, f"cat {remote}")
            status = chan.recv_exit_status()
            if status != 0:
                err = chan.recv_stderr(4096).decode("utf-8", "replace").strip()
                raise SshError(f"cannot read {remote} on {self.host}: {err or f'exit {status}'}")
        finally:
            chan.close()
        local.write_bytes(data)
        return local

    def push(self, local: str | Path, remote: str, timeout: float = 60) -> None:
        """Copy a local file to the board."""
        data = Path(local).read_bytes()
        chan = self.transport.open_session(timeout=timeout)
        try:
            chan.settimeout(timeout)
            chan.exec_command(f"cat > {shlex.quote(remote)}")
            chan.sendall(data)
            chan.shutdown_write()
            status = chan.recv_exit_status()
            if status != 0:
                raise SshError(f"cannot write {remote} on {self.host}: exit {status}")
        finally:
            chan.close()

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> SshConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

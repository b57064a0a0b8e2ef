"""Pseudo-terminals behind stable paths: how a simulated serial device appears to the gateway.

``PtyLink`` opens a pty pair, keeps both ends (holding the slave open means the
master never sees a hang-up while the gateway reconnects), puts the slave in
raw mode (no CR/LF translation, no echo: bytes pass as on a real wire) and
points a symlink at the configured ``port`` path, creating its folders. The
simulator reads and writes the master end. ``close`` removes the symlink (only
if it still points at this pty) and closes both ends, which the gateway sees
as an unplugged device.
"""

from __future__ import annotations

import contextlib
import os
import tty
from pathlib import Path


class PtyError(Exception):
    """The pty or its symlink cannot be set up."""


class PtyLink:
    def __init__(self, link: str | Path) -> None:
        self.link = Path(link)
        self.master_fd = -1
        self._slave_fd = -1
        self.pty_path = ""

    @property
    def is_open(self) -> bool:
        return self.master_fd >= 0

    def open(self) -> None:
        if self.link.exists() and not self.link.is_symlink():
            raise PtyError(f"{self.link} exists and is not a symlink; refusing to replace it")
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.master_fd, self._slave_fd = master, slave
        self.pty_path = os.ttyname(slave)
        try:
            self.link.parent.mkdir(parents=True, exist_ok=True)
            # Replace atomically so a gateway polling the path never sees it missing.
            tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.pty_path)
            os.replace(tmp, self.link)
        except OSError as exc:
            self.close()
            raise PtyError(f"cannot link {self.link} -> {self.pty_path}: {exc}") from exc

    def write(self, data: bytes) -> bool:
        """Write to the device side; False when the line is closed or its buffer is full."""
        if self.master_fd < 0:
            return False
        try:
            os.write(self.master_fd, data)
        except (BlockingIOError, OSError):
            # Nobody drains the line (gateway not connected): a real device's
            # bytes would be lost on the wire too.
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.pty_path and self.link.is_symlink() and os.readlink(self.link) == self.pty_path:
                self.link.unlink()
        for fd in (self.master_fd, self._slave_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master_fd = self._slave_fd = -1

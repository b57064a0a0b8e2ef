"""Process plumbing for the benchmarks: start, watch, measure and always stop child processes.

Every child runs in its own session so that stopping it (SIGTERM, then
SIGKILL after a bounded wait) also stops anything it started. ``Children``
is a context manager that stops whatever is still running on the way out,
whatever happened. CPU time and peak RSS are read from ``/proc/<pid>``
(utime+stime in clock ticks; ``VmHWM``), which only works while the child
has not been reaped, so callers read them before stopping it.

The real servers (Mosquitto, InfluxDB 1.x) come from the test fixtures'
starters (``tests/fixtures/servers.py``), which are plain functions.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[1]


def pid_cpu_s(pid: int | None) -> float:
    """utime + stime of a running process, in seconds (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the ")" the fields start at #3 (state); utime is #14, stime #15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def renice(pid: int, niceness: int) -> None:
    """Set the niceness of every thread of ``pid`` (Linux nice values are per thread)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)


class Child:
    """One child process with its output going to a log file or a pipe."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        stdout_pipe: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        log = log_path.open("ab")
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE if stdout_pipe else log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        log.close()
        self.lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        if stdout_pipe:
            self._reader = threading.Thread(target=self._read_stdout, daemon=True)
            self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_stdout(self) -> None:
        out: IO[bytes] | None = self.proc.stdout
        assert out is not None
        for raw in out:
            with self._lines_lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def snapshot(self) -> list[str]:
        with self._lines_lock:
            return list(self.lines)

    def wait_line(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """The first stdout line matching ``predicate``; raises after ``timeout`` s or on exit."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            lines = self.snapshot()
            for line in lines[seen:]:
                if predicate(line):
                    return line
            seen = len(lines)
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}): {self.log_tail()}"
                )
            time.sleep(0.02)
        raise RuntimeError(f"{self.name}: no ready line within {timeout} s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def cpu_s(self) -> float:
        """utime + stime of the running child, in seconds."""
        return pid_cpu_s(self.pid)

    def status_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL the whole session."""
        p = self.proc
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        if self._reader is not None:
            self._reader.join(2)
        return p.returncode

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


class Children:
    """Starts children and stops every one still running when the block ends."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], **kw: Any) -> Child:
        child = Child(name, argv, self.workdir / f"{name}.log", **kw)
        self.children.append(child)
        return child

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        et: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for child in reversed(self.children):
            child.stop(5.0)


def python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def machine_facts() -> dict[str, Any]:
    """CPU model, cores, memory, Python: printed next to every figure."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": load,
    }

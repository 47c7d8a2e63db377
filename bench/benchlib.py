"""Helpers shared by the benchmark scripts: ports, child processes measured with wait4, the local server."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Block until something listens on the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f}s")


@dataclass(slots=True)
class ChildUsage:
    """What one child process cost: wall time, CPU seconds (its own, from wait4), peak RSS and exit code."""

    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    exit_code: int

    @property
    def cpu_s(self) -> float:
        """User plus system CPU seconds."""
        return self.user_s + self.sys_s


def run_measured(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: IO[Any] | int | None = subprocess.DEVNULL,
    stderr: IO[Any] | int | None = subprocess.DEVNULL,
    cwd: Path | None = None,
) -> ChildUsage:
    """Run a command to its end; return its wall time and the rusage of that child alone (os.wait4)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), env=dict(env) if env is not None else None, stdout=stdout, stderr=stderr, cwd=cwd
    )
    peak = _PeakWatcher(proc.pid)
    peak.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    peak.stop.set()
    peak.join()
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
    return ChildUsage(
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        # Linux keeps ru_maxrss across fork and exec: it is at least this script's own peak, so a
        # child smaller than its parent would look as big. Its VmHWM, read while it runs, is its own.
        peak_rss_mb=(peak.kb if peak.kb else usage.ru_maxrss) / 1024,  # kilobytes on Linux
        exit_code=proc.returncode,
    )


class _PeakWatcher(threading.Thread):
    """Reads a process's own peak RSS (VmHWM in /proc) every few milliseconds until told to stop."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.path = Path(f"/proc/{pid}/status")
        self.stop = threading.Event()
        self.kb = 0

    def run(self) -> None:
        while not self.stop.wait(0.005):
            try:
                text = self.path.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.kb = max(self.kb, int(line.split()[1]))


def median_wall(cmd: Sequence[str], runs: int, *, env: Mapping[str, str] | None = None) -> float:
    """Median wall time in seconds of `runs` runs of a command (after one unmeasured warm-up)."""
    subprocess.run(list(cmd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    times = []
    for _ in range(runs):
        usage = run_measured(cmd, env=env)
        if usage.exit_code != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {usage.exit_code}")
        times.append(usage.wall_s)
    return statistics.median(times)


def make_jsonl(path: Path, rows: int) -> None:
    """A JSONL file of `rows` short prompts, each `{"id": "r<n>", "prompt": ...}`."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(rows):
            f.write(json.dumps({"id": f"r{i}", "prompt": f"Write one short sentence about the number {i}."}) + "\n")
    tmp.replace(path)


def count_lines(path: Path) -> int:
    """Number of lines in a file."""
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def hfbatch_run_command(
    inp: Path, out: Path, *, api_base: str, provider: str | None, concurrency: int, extra: Sequence[str] = ()
) -> list[str]:
    """`hfbatch run` over `inp` against one OpenAI-compatible server (a plain one is its own provider), as typed."""
    pick = ["--providers", provider] if provider else []
    return [
        sys.executable, "-m", "hfbatch", "run", "--input", str(inp), "--output", str(out),
        "--model", "bench/model", *pick, "--api-base", api_base,
        "--concurrency", str(concurrency), *extra,
    ]  # fmt: skip


def hfbatch_env() -> dict[str, str]:
    """The environment hfbatch runs in here: a dummy token, no debug, no time scaling, its bytecode compiled."""
    compile_hfbatch()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_ENDPOINT", "HFBATCH_TIME_SCALE")}
    env["HF_TOKEN"] = "dummy"
    return env


_compiled = False


def compile_hfbatch() -> None:
    """Write hfbatch's bytecode once, as `pip install` does for a user.

    An editable install from a checkout has none, and where PYTHONDONTWRITEBYTECODE is set
    (CI, this machine) Python never writes it: every run would compile the whole package
    again, about a third of a second that no installed copy pays.
    """
    global _compiled
    if not _compiled:
        import compileall

        import hfbatch

        compileall.compile_dir(Path(hfbatch.__file__).parent, quiet=1)
        _compiled = True


class BenchServer:
    """`bench/server.py` in its own process, with its counters read over HTTP."""

    def __init__(self, *, latency_ms: float = 0.0, port: int | None = None) -> None:
        self.port = port or free_port()
        self.latency_ms = latency_ms
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_base(self) -> str:
        """The OpenAI-compatible base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> BenchServer:
        """Start the server and wait until it listens."""
        cmd = [sys.executable, str(BENCH_DIR / "server.py"), "--port", str(self.port)]
        cmd += ["--latency-ms", str(self.latency_ms)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        # It prints one line once it listens, and exits (an empty read) when it cannot bind the port.
        if not self.proc.stdout.readline().startswith(b"listening"):
            self.proc.wait()
            raise RuntimeError(f"bench/server.py did not start on port {self.port} (in use?)")
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, path: str, body: bytes | None = None) -> dict[str, Any]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body)
        with urllib.request.urlopen(req, timeout=10) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data

    def stats(self) -> dict[str, Any]:
        """The server's counters: requests served and its own CPU seconds so far."""
        return self._call("/stats")

    def set_latency(self, latency_ms: float) -> None:
        """Change the delay before each reply."""
        self._call("/admin/latency", str(latency_ms).encode())
        self.latency_ms = latency_ms

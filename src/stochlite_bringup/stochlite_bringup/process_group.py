"""Supervision of the graph's node processes: start, stream output, notice deaths, stop them all; and the rule
for what a node's exit means, which ``mdemorl train`` and the launch files share."""
from __future__ import annotations

import collections
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

TAIL_LINES = 20
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _prepare_child() -> None:
    """In the child before exec: get SIGTERM if the launcher dies, even by SIGKILL, so no node is orphaned;
    and take SIGINT (the first stop request) by default even if the launcher was started with it ignored,
    as background jobs of a non-interactive shell are."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass(frozen=True)
class ExitDecision:
    """What a node's exit means for the run: whether the run ends, why, and whether as a failure."""

    ends_run: bool
    reason: str
    failed: bool = False


def exit_decision(node: str, returncode: int, ends_run: bool, stopping: bool = False) -> ExitDecision:
    """Any node exiting non-zero ends the run as a failure; a node that ends the run (``NodeSpec.ends_run``)
    completes it by exiting 0; another node exiting 0 has finished its part. Exits while the graph is
    already ``stopping`` are the stop's doing."""
    if stopping:
        return ExitDecision(False, f"{node} stopped with exit code {returncode}")
    if returncode != 0:
        killed = f" ({signal.Signals(-returncode).name})" if -returncode in signal.valid_signals() else ""
        return ExitDecision(True, f"node {node!r} died with exit code {returncode}{killed}", failed=True)
    if ends_run:
        return ExitDecision(True, f"{node} finished: the run is complete")
    return ExitDecision(False, f"{node} finished its part")


@dataclass
class NodeProcess:
    """A running node: its process, a log file and the last lines it printed."""

    name: str
    popen: subprocess.Popen
    log: IO[str]
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None

    @property
    def exit_code(self) -> int | None:
        return self.popen.poll()


class ProcessGroup:
    """Starts each node in its own session, so that a signal reaches it whatever the parent shell does."""

    def __init__(self, log_dir: Path, echo: IO[str] = sys.stdout):
        self.log_dir = log_dir
        self.echo = echo
        self.nodes: list[NodeProcess] = []
        self._echo_lock = threading.Lock()

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> NodeProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "w")
        popen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, text=True, bufsize=1, start_new_session=True,
                                 preexec_fn=_prepare_child)
        node = NodeProcess(name, popen, log)
        node.reader = threading.Thread(target=self._pump, args=(node,), daemon=True)
        node.reader.start()
        self.nodes.append(node)
        return node

    def _pump(self, node: NodeProcess) -> None:
        assert node.popen.stdout is not None
        for line in node.popen.stdout:
            node.tail.append(line.rstrip("\n"))
            node.log.write(line)
            node.log.flush()
            with self._echo_lock:
                self.echo.write(f"[{node.name}] {line}")
                self.echo.flush()

    def wait_any(self, poll_s: float = 0.2) -> NodeProcess:
        """Block until some node has exited; returns it."""
        while True:
            for node in self.nodes:
                if node.exit_code is not None:
                    if node.reader is not None:
                        node.reader.join(timeout=2.0)
                    return node
            time.sleep(poll_s)

    def stop_all(self, timeout_s: float = 10.0) -> list[str]:
        """SIGINT every running node, SIGTERM at half the timeout, SIGKILL at 90 %; names the stubborn."""
        start = time.monotonic()
        escalated: list[str] = []
        for sig, until in ((signal.SIGINT, start + 0.5 * timeout_s), (signal.SIGTERM, start + 0.9 * timeout_s),
                           (signal.SIGKILL, start + timeout_s)):
            running = [n for n in self.nodes if n.exit_code is None]
            if not running:
                break
            if sig != signal.SIGINT:
                escalated += [f"{n.name} ({sig.name})" for n in running]
            for node in running:
                try:
                    os.killpg(node.popen.pid, sig)
                except ProcessLookupError:
                    pass
            while time.monotonic() < until and any(n.exit_code is None for n in running):
                time.sleep(0.05)
        for node in self.nodes:
            node.popen.wait()
            if node.reader is not None:
                node.reader.join(timeout=2.0)
            node.log.close()
        return escalated

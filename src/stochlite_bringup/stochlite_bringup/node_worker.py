"""``Worker``: a node's background thread for work that must not block its executor (fits, loading);
``WorkerNode``: a node that owns such threads and stops them when it is destroyed."""
from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from rclpy.node import Node

WORKER_JOIN_S = 2.0  # how long destroy_node waits for each worker's running job


class Worker:
    """One background thread that runs ``job`` after each ``poke``; pokes during a run coalesce into one rerun.

    ``job`` decides itself whether there is work to do. An exception in it is logged, not fatal.
    ``instances`` lets ``run_node`` see whether one is still running when the process ends.
    """

    instances: weakref.WeakSet[Worker] = weakref.WeakSet()

    def __init__(self, job: Callable[[], None], node: Node) -> None:
        Worker.instances.add(self)
        self._job = job
        self._logger = node.get_logger()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name=f"{node.get_name()}_worker", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def poke(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float) -> None:
        """Ask the thread to end and wait up to ``timeout_s`` (a running job is not interrupted)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            if self._stopping.is_set():
                return
            self._wake.clear()
            self.busy = True
            try:
                self._job()
            except Exception as exc:  # keep the node alive; the next poke retries
                self._logger.error(f"background job failed: {type(exc).__name__}: {exc}")
            finally:
                self.busy = False


class WorkerNode(Node):
    """A node whose :class:`Worker` threads (from :meth:`start_worker`) are stopped before it is destroyed."""

    def __init__(self, node_name: str, **node_kwargs) -> None:
        self._workers: list[Worker] = []
        super().__init__(node_name, **node_kwargs)

    def start_worker(self, job: Callable[[], None]) -> Worker:
        """A new background thread running ``job`` after each ``poke``."""
        worker = Worker(job, self)
        self._workers.append(worker)
        return worker

    def destroy_node(self) -> None:
        for worker in self._workers:
            worker.stop(WORKER_JOIN_S)
        super().destroy_node()

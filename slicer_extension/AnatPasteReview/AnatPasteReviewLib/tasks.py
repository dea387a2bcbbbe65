"""Run blocking calls (network) off the GUI thread; hand their results back on the GUI thread.

Qt and VTK objects must only be touched from the GUI thread, and a dead server must never freeze
3D Slicer. A :class:`TaskRunner` runs each call in a daemon thread; the GUI calls :meth:`TaskRunner.poll`
from a timer, and that is where the callbacks run. Standard library only.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Task:
    """A submitted call. ``name`` identifies it (one task per name at a time, see ``TaskRunner.submit``)."""

    name: str
    done: bool = False
    error: BaseException | None = None
    result: Any = None


class TaskRunner:
    """Background threads for blocking calls, results delivered by :meth:`poll`.

    Example:
        >>> runner = TaskRunner()
        >>> got = []
        >>> _ = runner.submit("add", lambda: 1 + 1, on_done=got.append)
        >>> runner.wait_idle(5.0)
        True
        >>> got
        [2]
    """

    def __init__(self):
        self._results: queue.Queue[tuple[Task, Callable | None, Callable | None]] = queue.Queue()
        self._pending: dict[str, Task] = {}

    def busy(self, name: str | None = None) -> bool:
        """Whether a task (any, or the one named) is running or waiting to deliver its result."""
        return bool(self._pending) if name is None else name in self._pending

    def submit(
        self,
        name: str,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> Task:
        """Start ``fn()`` in a daemon thread; later :meth:`poll` calls ``on_done(result)`` or
        ``on_error(exception)``.

        Raises:
            RuntimeError: a task with this name is still pending (callers check :meth:`busy`).
        """
        if name in self._pending:
            raise RuntimeError(f"task {name!r} is already running")
        task = Task(name)
        self._pending[name] = task

        def work():
            try:
                task.result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to on_error on the GUI thread
                task.error = exc
            task.done = True
            self._results.put((task, on_done, on_error))

        threading.Thread(target=work, name=f"AnatPasteReview-{name}", daemon=True).start()
        return task

    def poll(self, wait: float = 0.0) -> int:
        """Deliver finished tasks' callbacks on the calling thread; return how many were delivered.

        Args:
            wait: seconds to wait for a first result when tasks are pending (0: do not wait). A short
                wait also lets worker threads run in an embedded interpreter that holds the GIL while
                idle.
        """
        delivered = 0
        block = wait > 0 and bool(self._pending)
        while True:
            try:
                task, on_done, on_error = self._results.get(block=block, timeout=wait if block else None)
            except queue.Empty:
                return delivered
            block = False
            self._pending.pop(task.name, None)
            delivered += 1
            if task.error is not None:
                if on_error is None:
                    raise task.error
                on_error(task.error)
            elif on_done is not None:
                on_done(task.result)

    def wait_idle(self, timeout: float) -> bool:
        """Poll until no task is pending (for scripts and tests); False on timeout."""
        import time

        deadline = time.monotonic() + timeout
        while self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.poll(wait=min(left, 0.05))
        return True

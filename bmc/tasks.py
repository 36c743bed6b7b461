"""Long-running operations of a BMC (firmware updates, ...), tracked as tasks.

A task runs its work on a timer thread after a simulated duration, so the request that started
it can answer at once (Redfish: 202 Accepted and a task monitor). Finished tasks are kept, up
to a bound, so a client can still read how they ended.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

TASK_REGISTRY = "TaskEvent.1.0.5"


class TaskState(StrEnum):
    """Redfish TaskState values this service uses."""

    NEW = "New"
    RUNNING = "Running"
    COMPLETED = "Completed"
    EXCEPTION = "Exception"
    CANCELLED = "Cancelled"


@dataclass(frozen=True)
class TaskMessage:
    message_id: str  # full, e.g. "TaskEvent.1.0.5.TaskCompletedOK"
    message: str
    severity: str = "OK"
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    id: str
    name: str
    state: TaskState
    status: str  # Redfish Health: OK, Warning, Critical
    start: float
    duration: float
    end: float | None = None
    messages: tuple[TaskMessage, ...] = ()
    #: the request that started it (Redfish Task Payload), for clients that show it
    method: str = "POST"
    target_uri: str = ""
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in (TaskState.COMPLETED, TaskState.EXCEPTION, TaskState.CANCELLED)

    def percent(self, now: float | None = None) -> int:
        if self.finished:
            return 100
        if self.duration <= 0:
            return 0
        elapsed = (now if now is not None else time.time()) - self.start
        return max(0, min(99, int(100 * elapsed / self.duration)))


TaskListener = Callable[[Task], None]
#: a task's work: returns messages to add on success, raises to fail the task
Work = Callable[[], list[TaskMessage]]


def _no_messages(done: Future[Any]) -> list[TaskMessage]:
    done.result()  # raises what the work raised
    return []


def _message(name: str, task_id: str, severity: str, text: str) -> TaskMessage:
    return TaskMessage(f"{TASK_REGISTRY}.{name}", text.replace("%1", task_id), severity,
                       (task_id,))


class TaskStore:
    """The tasks of one BMC. Thread-safe."""

    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._tasks: dict[str, Task] = {}
        self._ids = itertools.count(1)
        self._timers: dict[str, threading.Timer] = {}
        self.listeners: list[TaskListener] = []

    def start(self, name: str, duration: float, work: Work, *, target_uri: str = "",
              body: dict[str, Any] | None = None) -> Task:
        """A task that runs `work` after a simulated `duration`."""
        with self._lock:
            task = self._new(name, duration, target_uri, body)
            timer = threading.Timer(duration, self._finish, (task.id, work))
            timer.daemon = True
            timer.name = f"task-{task.id}"
            self._timers[task.id] = timer
        timer.start()
        self._notify(task)
        return task

    def track(self, name: str, future: Future[Any], *, expected: float = 1.0,
              target_uri: str = "", body: dict[str, Any] | None = None) -> Task:
        """A task that ends when `future` does (work already under way elsewhere, e.g. a
        power action on the node's worker); its exception fails the task. `expected` is
        the duration PercentComplete assumes."""
        with self._lock:
            task = self._new(name, expected, target_uri, body)
        self._notify(task)
        future.add_done_callback(lambda done: self._finish(task.id, lambda: _no_messages(done)))
        return task

    def _new(self, name: str, duration: float, target_uri: str,
             body: dict[str, Any] | None) -> Task:
        task_id = str(next(self._ids))
        task = Task(task_id, name, TaskState.RUNNING, "OK", time.time(), duration,
                    messages=(_message("TaskStarted", task_id, "OK",
                                       "The task with Id '%1' has started."),),
                    target_uri=target_uri, body=dict(body or {}))
        self._tasks[task_id] = task
        self._trim()
        return task

    def _finish(self, task_id: str, work: Work) -> None:
        try:
            extra = work()
            state, status = TaskState.COMPLETED, "OK"
            done = _message("TaskCompletedOK", task_id, "OK",
                            "The task with Id '%1' has completed.")
        except Exception as exc:  # the work failed: the task says so, the server lives on
            log.warning("task %s failed: %s", task_id, exc)
            extra = [TaskMessage("Base.1.22.1.GeneralError", str(exc), "Critical")]
            state, status = TaskState.EXCEPTION, "Critical"
            done = _message("TaskAborted", task_id, "Critical",
                            "The task with Id '%1' has completed with errors.")
        with self._lock:
            self._timers.pop(task_id, None)
            task = self._tasks.get(task_id)
            if task is None or task.finished:
                return
            task = replace(task, state=state, status=status, end=time.time(),
                           messages=(*task.messages, *extra, done))
            self._tasks[task_id] = task
        self._notify(task)

    def _notify(self, task: Task) -> None:
        for listener in list(self.listeners):
            try:
                listener(task)
            except Exception:  # a listener's bug must not lose the task
                log.exception("task listener failed")

    def _trim(self) -> None:
        # drop the oldest finished tasks beyond the limit; running ones are always kept
        finished = [t for t in self._tasks.values() if t.finished]
        for task in finished[:max(0, len(self._tasks) - self.limit)]:
            del self._tasks[task.id]

    def get(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def all(self) -> list[Task]:
        with self._lock:
            return sorted(self._tasks.values(), key=lambda t: int(t.id))

    def cancel(self, task_id: str) -> Task | None:
        """Stop a running task (its work never runs); None if there is no such task."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.finished:
                return task
            timer = self._timers.pop(task_id, None)
            if timer is not None:
                timer.cancel()
            task = replace(task, state=TaskState.CANCELLED, status="Warning", end=time.time(),
                           messages=(*task.messages, _message(
                               "TaskCancelled", task_id, "Warning",
                               "Work on the task with Id '%1' was halted prior to completion "
                               "due to an explicit request.")))
            self._tasks[task_id] = task
        self._notify(task)
        return task

    def close(self) -> None:
        with self._lock:
            timers, self._timers = list(self._timers.values()), {}
        for timer in timers:
            timer.cancel()

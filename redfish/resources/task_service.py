"""TaskService: tasks of long-running operations and their task monitors.

An action that takes time answers 202 with `Location: <task monitor>` (`accepted()`); the
monitor answers 202 (with `Retry-After` and the task) while the task runs, and 200 with the
task once it is done, which is what sushy's `TaskMonitor` and Ironic poll for. DELETE on the
monitor (or the task) cancels a running task.
"""

from __future__ import annotations

import json
import time
from email.utils import formatdate

from flask import Blueprint, Response

from bmc.tasks import Task, TaskMessage
from redfish import context, odata, paths
from redfish.errors import Message
from redfish.event_service import iso
from redfish.odata import Body, link

bp = Blueprint("task_service", __name__)


def message_json(message: TaskMessage) -> Body:
    return {
        "@odata.type": "#Message.v1_1_2.Message",
        "MessageId": message.message_id,
        "Message": message.message,
        "MessageArgs": list(message.args),
        "Severity": message.severity,
        "MessageSeverity": message.severity,
    }


def task_body(task: Task) -> Body:
    body = odata.resource(
        "Task", paths.task(task.id),
        Id=task.id,
        Name=task.name,
        TaskState=task.state.value,
        TaskStatus=task.status,
        StartTime=iso(task.start),
        PercentComplete=task.percent(),
        TaskMonitor=paths.task_monitor(task.id),
        HidePayload=False,
        Payload={
            "HttpOperation": task.method,
            "TargetUri": task.target_uri,
            "JsonBody": json.dumps(task.body),
            "HttpHeaders": [],
        },
        Messages=[message_json(m) for m in task.messages],
    )
    if task.end is not None:
        body["EndTime"] = iso(task.end)
    return body


def accepted(task: Task) -> Response:
    """The 202 answer of an action that started `task`.

    The body names no `@odata.id`: sushy would poll that URI instead of the task monitor.
    """
    started = Message("Success", text=f"Task {task.id} started; poll the task monitor "
                                      f"{paths.task_monitor(task.id)}.")
    return odata.json_response(
        {"@Message.ExtendedInfo": [started.to_json()]}, 202,
        {"Location": paths.task_monitor(task.id), "Retry-After": retry_after()})


def retry_after(seconds: float = 2.0) -> str:
    """Retry-After as an HTTP date: sushy's TaskMonitor.wait() cannot sleep the digits form."""
    return formatdate(time.time() + seconds, usegmt=True)


@bp.get(paths.TASK_SERVICE)
def task_service() -> Response:
    return odata.json_response(odata.resource(
        "TaskService", paths.TASK_SERVICE,
        Id="TaskService",
        Name="Task Service",
        ServiceEnabled=True,
        DateTime=iso(time.time()),
        CompletedTaskOverWritePolicy="Oldest",
        LifeCycleEventOnTaskStateChange=True,
        Tasks=link(paths.TASKS),
        Status={"State": "Enabled", "Health": "OK"},
    ))


@bp.get(paths.TASKS)
def tasks() -> Response:
    return odata.json_response(odata.collection(
        "TaskCollection", paths.TASKS, "Task Collection",
        [paths.task(t.id) for t in context.node().tasks.all()]))


def _task(task_id: str) -> Task:
    task = context.node().tasks.get(task_id)
    if task is None:
        raise context.missing()
    return task


@bp.get(f"{paths.TASKS}/<task_id>")
def get_task(task_id: str) -> Response:
    return odata.json_response(task_body(_task(task_id)))


@bp.delete(f"{paths.TASKS}/<task_id>")
def delete_task(task_id: str) -> Response:
    context.require("ConfigureComponents")
    _task(task_id)
    context.node().tasks.cancel(task_id)
    return Response(status=204)


@bp.get(f"{paths.TASK_MONITORS}/<task_id>")
def task_monitor(task_id: str) -> Response:
    task = _task(task_id)
    if task.finished:
        return odata.json_response(task_body(task))
    return odata.json_response(task_body(task), 202,
                               {"Location": paths.task_monitor(task.id),
                                "Retry-After": retry_after()})


@bp.delete(f"{paths.TASK_MONITORS}/<task_id>")
def cancel_task(task_id: str) -> Response:
    context.require("ConfigureComponents")
    _task(task_id)
    context.node().tasks.cancel(task_id)
    return Response(status=204)

"""/v2/analysis-task-statuses/: sub-tasks of every analysis, and their logs."""

from __future__ import annotations

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy import select

from api import db, serialize
from api.errors import not_found
from api.filters import apply_filters
from api.replies import Reply
from api.schemas import (
    BEARER,
    PROTECTED,
    Message,
    Responses,
    SubTaskList,
    SubTaskOut,
    TaskPath,
    TaskQuery,
    text,
)
from api.store.orm import SubTask

bp = APIBlueprint(
    "tasks",
    __name__,
    url_prefix="/v2/analysis-task-statuses",
    abp_tags=[Tag(name="analysis-task-statuses")],
    abp_security=BEARER,
    abp_responses=PROTECTED,
)
LOG: Responses = {200: text(), 404: Message}


def get_task(task_pk: int) -> SubTask:
    row = db.session().get(SubTask, task_pk)
    if row is None:
        raise not_found(f"sub-task {task_pk}")
    return row


@bp.get("/", responses={200: SubTaskList})
def list_tasks(query: TaskQuery) -> Reply:
    statement = apply_filters(select(SubTask), SubTask, query, columns={"analysis": "analysis_id"})
    return jsonify(
        [serialize.sub_task(t) for t in db.session().scalars(statement.order_by(SubTask.id))]
    )


@bp.get("/<int:task_pk>/", responses={200: SubTaskOut, 404: Message})
def get_one(path: TaskPath) -> Reply:
    return jsonify(serialize.sub_task(get_task(path.task_pk)))


@bp.get("/<int:task_pk>/output_log/", responses=LOG)
def output_log(path: TaskPath) -> Reply:
    return _log(get_task(path.task_pk).output_log, f"output log of sub-task {path.task_pk}")


@bp.get("/<int:task_pk>/error_log/", responses=LOG)
def error_log(path: TaskPath) -> Reply:
    return _log(get_task(path.task_pk).error_log, f"error log of sub-task {path.task_pk}")


@bp.get("/<int:task_pk>/retry_log/", responses=LOG)
def retry_log(path: TaskPath) -> Reply:
    return _log(get_task(path.task_pk).retry_log, f"retry log of sub-task {path.task_pk}")


def _log(text: str | None, what: str) -> Response:
    if text is None:
        raise not_found(what)
    return Response(text, mimetype="text/plain")

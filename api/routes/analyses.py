"""/v2/analyses/: analyses, their settings and chunking override, and the actions on them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from flask import Response, jsonify, send_file
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, select

from api import db, serialize
from api.configurations import merge_fields
from api.errors import bad_request, not_found
from api.files import check_for_model
from api.filters import apply_filters
from api.lifecycle import Action, after_cancel, refusal
from api.metrics import telemetry_redis
from api.queueing import publish, revoke
from api.replies import Reply
from api.routes.portfolios import storage
from api.schemas import (
    BEARER,
    PROTECTED,
    AnalysisIn,
    AnalysisList,
    AnalysisOut,
    AnalysisPath,
    AnalysisQuery,
    ChunkingConfigurationUpdate,
    JsonObject,
    Message,
    Responses,
    SubTaskList,
    binary,
    text,
)
from api.store.orm import Analysis, Model, Portfolio, SubTask
from api.store.statuses import IN_QUEUE, INPUTS, LOSSES, RecordedStatus
from worker import activity
from worker.configuration import ChunkingConfiguration, ChunkingStrategy
from worker.event_sets import EventSetError, selected_event_count
from worker.messages import GENERATE_AND_RUN_TASK, GENERATE_INPUTS_TASK, RUN_TASK
from worker.stored_chunking import stored_chunking

bp = APIBlueprint(
    "analyses",
    __name__,
    url_prefix="/v2/analyses",
    abp_tags=[Tag(name="analyses")],
    abp_security=BEARER,
    abp_responses=PROTECTED,
)
ANSWERS: Responses = {200: AnalysisOut, 404: Message}
# Actions that put a task on the queue: 503 when the broker cannot be reached.
QUEUEING: Responses = {**ANSWERS, 503: Message}
TEXT: Responses = {200: text(), 404: Message}
ARCHIVE: Responses = {200: binary("application/gzip"), 404: Message}


class SubTaskQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subtask_status: str | None = None
    subtask_slug: str | None = None


def get_analysis(analysis_pk: int) -> Analysis:
    row = db.session().get(Analysis, analysis_pk)
    if row is None:
        raise not_found(f"analysis {analysis_pk}")
    return row


@bp.get("/", responses={200: AnalysisList})
def list_analyses(query: AnalysisQuery) -> Reply:
    statement = apply_filters(
        select(Analysis),
        Analysis,
        query,
        columns={"model": "model_id", "portfolio": "portfolio_id"},
    )
    rows = db.session().scalars(statement.order_by(Analysis.id))
    return jsonify([serialize.analysis(a) for a in rows])


@bp.post("/", responses={201: AnalysisOut})
def create_analysis(body: AnalysisIn) -> Reply:
    session = db.session()
    if session.get(Portfolio, body.portfolio) is None:
        raise bad_request("portfolio", f"Portfolio {body.portfolio} does not exist.")
    if session.get(Model, body.model) is None:
        raise bad_request("model", f"Model {body.model} does not exist.")
    row = Analysis(
        name=body.name, portfolio_id=body.portfolio, model_id=body.model, priority=body.priority
    )
    session.add(row)
    session.commit()
    return jsonify(serialize.analysis(row)), 201


@bp.get("/<int:analysis_pk>/", responses=ANSWERS)
def get_one(path: AnalysisPath) -> Reply:
    return jsonify(serialize.analysis(get_analysis(path.analysis_pk)))


@bp.delete("/<int:analysis_pk>/", responses={204: None, 404: Message})
def delete_analysis(path: AnalysisPath) -> Reply:
    session = db.session()
    session.delete(get_analysis(path.analysis_pk))
    session.commit()
    storage().remove_analysis(path.analysis_pk)
    return "", 204


@bp.get("/<int:analysis_pk>/settings/", responses={200: JsonObject, 404: Message})
def get_settings(path: AnalysisPath) -> Reply:
    row = get_analysis(path.analysis_pk)
    if row.settings is None:
        raise not_found(f"settings of analysis {path.analysis_pk}")
    return jsonify(row.settings)


@bp.post("/<int:analysis_pk>/settings/", responses={200: JsonObject, 404: Message})
def post_settings(path: AnalysisPath, body: JsonObject) -> Reply:
    """The analysis settings JSON; `model_settings.event_set` selects the event set."""
    row = get_analysis(path.analysis_pk)
    row.settings = body.root
    db.session().commit()
    return jsonify(row.settings)


@bp.delete("/<int:analysis_pk>/settings/", responses={204: None, 404: Message})
def delete_settings(path: AnalysisPath) -> Reply:
    row = get_analysis(path.analysis_pk)
    row.settings = None
    db.session().commit()
    return "", 204


@bp.get(
    "/<int:analysis_pk>/chunking_configuration/",
    responses={200: ChunkingConfiguration, 404: Message},
)
def get_chunking(path: AnalysisPath) -> Reply:
    """The effective configuration: each field the analysis overrides, else the model's."""
    return jsonify(effective_chunking(get_analysis(path.analysis_pk)).model_dump(mode="json"))


@bp.post(
    "/<int:analysis_pk>/chunking_configuration/",
    responses={200: ChunkingConfiguration, 404: Message},
)
def post_chunking(path: AnalysisPath, body: ChunkingConfigurationUpdate) -> Reply:
    """Override the given fields for this analysis; answers the effective configuration."""
    row = get_analysis(path.analysis_pk)
    given = body.model_dump(mode="json", exclude_unset=True)
    override = {**(row.chunking_override or {}), **given}
    merge_fields(ChunkingConfiguration(), override)  # 400 naming any bad field
    row.chunking_override = override
    db.session().commit()
    return jsonify(effective_chunking(row).model_dump(mode="json"))


@bp.get("/<int:analysis_pk>/sub_task_list/", responses={200: SubTaskList, 404: Message})
def sub_task_list(path: AnalysisPath, query: SubTaskQuery) -> Reply:
    row = get_analysis(path.analysis_pk)
    tasks = [
        t
        for t in row.sub_tasks
        if (query.subtask_status is None or t.status == query.subtask_status)
        and (query.subtask_slug is None or query.subtask_slug in t.slug)
    ]
    return jsonify([serialize.sub_task(t) for t in tasks])


@bp.post("/<int:analysis_pk>/generate_inputs/", responses=QUEUEING)
def generate_inputs(path: AnalysisPath) -> Reply:
    """Queue input generation (keys lookup per location chunk) on the model's queue."""
    return _queue(path.analysis_pk, "generate_inputs")


@bp.post("/<int:analysis_pk>/run/", responses=QUEUEING)
def run(path: AnalysisPath) -> Reply:
    """Queue the loss run (one sub-task per event chunk) on the model's queue."""
    return _queue(path.analysis_pk, "run")


@bp.post("/<int:analysis_pk>/generate_and_run/", responses=QUEUEING)
def generate_and_run(path: AnalysisPath) -> Reply:
    return _queue(path.analysis_pk, "generate_and_run")


@bp.post("/<int:analysis_pk>/cancel/", responses=ANSWERS)
def cancel(path: AnalysisPath) -> Reply:
    """Cancel whatever is queued or running: input generation or the run."""
    return _cancel(path.analysis_pk, "cancel")


@bp.post("/<int:analysis_pk>/cancel_generate_inputs/", responses=ANSWERS)
def cancel_generate_inputs(path: AnalysisPath) -> Reply:
    return _cancel(path.analysis_pk, "cancel_generate_inputs")


@bp.post("/<int:analysis_pk>/cancel_analysis_run/", responses=ANSWERS)
def cancel_analysis_run(path: AnalysisPath) -> Reply:
    return _cancel(path.analysis_pk, "cancel_analysis_run")


@bp.get("/<int:analysis_pk>/input_generation_traceback_file/", responses=TEXT)
def input_generation_traceback_file(path: AnalysisPath) -> Reply:
    return _text(
        get_analysis(path.analysis_pk).input_generation_traceback,
        f"input generation traceback of analysis {path.analysis_pk}",
    )


@bp.get("/<int:analysis_pk>/run_traceback_file/", responses=TEXT)
def run_traceback_file(path: AnalysisPath) -> Reply:
    return _text(
        get_analysis(path.analysis_pk).run_traceback,
        f"run traceback of analysis {path.analysis_pk}",
    )


@bp.get("/<int:analysis_pk>/output_file/", responses=ARCHIVE)
def output_file(path: AnalysisPath) -> Reply:
    """The outputs (ORD) as a tar.gz, once a run has completed."""
    get_analysis(path.analysis_pk)
    return _archive(
        storage().output_archive(path.analysis_pk), f"output file of analysis {path.analysis_pk}"
    )


@bp.get("/<int:analysis_pk>/input_file/", responses=ARCHIVE)
def input_file(path: AnalysisPath) -> Reply:
    """The Oasis input files as a tar.gz, once inputs have been generated."""
    get_analysis(path.analysis_pk)
    return _archive(
        storage().input_archive(path.analysis_pk), f"input file of analysis {path.analysis_pk}"
    )


def _archive(archive: Path, what: str) -> Reply:
    if not archive.is_file():
        raise not_found(what)
    response = send_file(
        archive, mimetype="application/gzip", as_attachment=True, download_name=archive.name
    )
    response.headers["Content-Type"] = "application/gzip"
    return response


def effective_chunking(row: Analysis) -> ChunkingConfiguration:
    return stored_chunking(
        row.model.chunking_configuration, row.chunking_override, f"analysis {row.id}"
    )


STAGES: dict[Action, tuple[str, str, str]] = {
    # action: (status while queued, main task, stage whose sub-tasks are replaced)
    "generate_inputs": (INPUTS.queued, GENERATE_INPUTS_TASK, ""),
    "generate_and_run": (INPUTS.queued, GENERATE_AND_RUN_TASK, ""),
    "run": (LOSSES.queued, RUN_TASK, "losses"),
}


def _queue(analysis_pk: int, action: Action) -> Reply:
    row = get_analysis(analysis_pk)
    _check_can(row, action)
    status, task, stage = STAGES[action]
    session = db.session()
    deleted = delete(SubTask).where(SubTask.analysis_id == row.id)
    session.execute(deleted.where(SubTask.stage == stage) if stage else deleted)
    row.status, row.task_started, row.task_finished = status, None, None
    if action != "run":
        row.lookup_chunks = row.analysis_chunks = None
        row.input_generation_traceback = None
    row.analysis_chunks, row.run_traceback = None, None
    row.num_events_total = row.num_events_complete = 0
    session.flush()
    # Published before the commit: if the broker is away (503) the transaction rolls back and
    # nothing changes. The splitter waits for this commit before it acts on the message.
    publish(task, row.id, row.model.queue_name)
    session.commit()
    session.refresh(row)
    return jsonify(serialize.analysis(row))


def _check_can(row: Analysis, action: Action) -> None:
    reason = refusal(action, row.status)
    if reason:
        raise bad_request("status", reason)
    if action in ("generate_inputs", "generate_and_run"):
        stored = row.portfolio.location_file_stored
        if not stored:
            raise bad_request("portfolio", f"Portfolio {row.portfolio_id} has no location file.")
        check_for_model(storage().upload(stored), row.model.settings)
    if action in ("run", "generate_and_run"):
        if row.settings is None:
            raise bad_request("settings", "The analysis has no settings: POST them to settings/.")
        if effective_chunking(row).loss_strategy is ChunkingStrategy.DYNAMIC_CHUNKS:
            try:
                selected_event_count(row.model.settings, row.settings)
            except EventSetError as exc:
                raise bad_request("event_set", str(exc)) from None


def _cancel(analysis_pk: int, action: Action) -> Reply:
    row = get_analysis(analysis_pk)
    _check_can(row, action)
    row.status = after_cancel(row.status)
    unfinished = [task for task in row.sub_tasks if task.status in IN_QUEUE]
    cancelled: Counter[tuple[str, RecordedStatus]] = Counter()
    for task in unfinished:
        task.status = "CANCELLED"
        cancelled[(task.stage, "CANCELLED")] += 1
    db.session().commit()
    # Counted here, once: a worker that later takes one of their messages skips it uncounted.
    activity.record_many(telemetry_redis(), row.model.queue_name, cancelled)
    # Workers skip a sub-task of a cancelled analysis anyway; revoking also stops running ones.
    revoke([task.task_id for task in unfinished if task.task_id])
    return jsonify(serialize.analysis(row))


def _text(value: str | None, what: str) -> Response:
    if value is None:
        raise not_found(what)
    return Response(value, mimetype="text/plain")

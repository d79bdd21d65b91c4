"""ORM rows as the JSON the OasisPlatform v2 API answers with."""

from __future__ import annotations

from collections import Counter
from typing import Any

from flask import request

from api.schemas import (
    AnalysisOut,
    ModelOut,
    PortfolioOut,
    QueueModelOut,
    StatusCount,
    StoredFile,
    SubTaskOut,
)
from api.store.orm import Analysis, Model, Portfolio, SubTask
from api.store.statuses import IN_QUEUE

# Sub-task statuses that still hold work on the model's queue.


def link(path: str) -> str:
    return request.host_url.rstrip("/") + path


def model(row: Model) -> dict[str, Any]:
    base = f"/v2/models/{row.id}/"
    return ModelOut(
        id=row.id,
        supplier_id=row.supplier_id,
        model_id=row.model_id,
        version_id=row.version_id,
        queue_name=row.queue_name,
        created=row.created,
        modified=row.modified,
        data_files=[],
        run_mode="V2",
        groups=[],
        settings=link(base + "settings/"),
        scaling_configuration=link(base + "scaling_configuration/"),
        chunking_configuration=link(base + "chunking_configuration/"),
    ).model_dump(mode="json")


def queue_model(row: Model) -> dict[str, Any]:
    """A model as queue entries list it: relative URLs and `versions`, as the platform's."""
    base = f"/v2/models/{row.id}/"
    body = model(row) | {
        "settings": base + "settings/",
        "scaling_configuration": base + "scaling_configuration/",
        "chunking_configuration": base + "chunking_configuration/",
        "versions": base + "versions/",
    }
    return QueueModelOut.model_validate(body).model_dump(mode="json")


def portfolio(row: Portfolio) -> dict[str, Any]:
    location = None
    if row.location_file_stored:
        location = StoredFile(
            uri=link(f"/v2/portfolios/{row.id}/location_file/"),
            name=row.location_file_name or "location.csv",
            stored=row.location_file_stored,
            rows=row.location_file_rows or 0,
        )
    return PortfolioOut(
        id=row.id,
        name=row.name,
        created=row.created,
        modified=row.modified,
        groups=[],
        location_file=location,
    ).model_dump(mode="json")


def status_count(sub_tasks: list[SubTask]) -> StatusCount:
    counts = Counter(task.status for task in sub_tasks)
    return StatusCount(
        TOTAL_IN_QUEUE=sum(counts[s] for s in IN_QUEUE),
        TOTAL=len(sub_tasks),
        **{status: n for status, n in counts.items() if status in StatusCount.model_fields},
    )


def analysis(row: Analysis) -> dict[str, Any]:
    base = f"/v2/analyses/{row.id}/"
    return AnalysisOut(
        id=row.id,
        name=row.name,
        created=row.created,
        modified=row.modified,
        portfolio=row.portfolio_id,
        model=row.model_id,
        status=row.status,
        run_mode=row.run_mode,
        priority=row.priority,
        task_started=row.task_started,
        task_finished=row.task_finished,
        lookup_chunks=row.lookup_chunks,
        analysis_chunks=row.analysis_chunks,
        sub_task_count=len(row.sub_tasks),
        status_count=status_count(row.sub_tasks),
        sub_task_error_ids=[t.id for t in row.sub_tasks if t.status == "ERROR"],
        num_events_total=row.num_events_total,
        num_events_complete=row.num_events_complete,
        groups=[],
        complex_model_data_files=[],
        settings=link(base + "settings/") if row.settings is not None else None,
        sub_task_list=link(base + "sub_task_list/"),
        chunking_configuration=link(base + "chunking_configuration/"),
        input_file=None,
        output_file=None,
        input_generation_traceback_file=(
            link(base + "input_generation_traceback_file/")
            if row.input_generation_traceback
            else None
        ),
        run_traceback_file=link(base + "run_traceback_file/") if row.run_traceback else None,
    ).model_dump(mode="json")


def sub_task(row: SubTask) -> dict[str, Any]:
    base = f"/v2/analysis-task-statuses/{row.id}/"
    return SubTaskOut(
        id=row.id,
        task_id=row.task_id,
        status=row.status,
        queue_name=row.queue_name,
        name=row.name,
        slug=row.slug,
        analysis=row.analysis_id,
        pending_time=row.pending_time,
        queue_time=row.queue_time,
        start_time=row.start_time,
        end_time=row.end_time,
        retry_count=row.retry_count,
        worker=row.worker,
        output_log=link(base + "output_log/") if row.output_log is not None else None,
        error_log=link(base + "error_log/") if row.error_log is not None else None,
        retry_log=link(base + "retry_log/") if row.retry_log is not None else None,
    ).model_dump(mode="json")

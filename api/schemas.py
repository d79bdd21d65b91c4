"""Request and response shapes of the API, as pydantic models (the OpenAPI spec is built from them).

The configuration shapes are not restated here: they are the scaler's and the worker's own models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    RootModel,
    StrictInt,
    create_model,
)

from scaler.configuration import INT32_MAX, ScalingConfiguration, whole_number
from worker.configuration import ChunkingConfiguration


def format_timestamp(value: datetime) -> str:
    # SQLite hands back naive datetimes; every stored time is UTC. The client parses this format.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Timestamp = Annotated[datetime, PlainSerializer(format_timestamp, return_type=str)]
Identifier = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.]*$")
]
# PostgreSQL cannot store a NUL in text.
Name = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]

# Numbers follow the configurations' rule: 3.0 is 3; 1.5, true, "3" and null are refused.
WholeNumber = BeforeValidator(whole_number)
Id = Annotated[StrictInt, Field(ge=1, le=INT32_MAX), WholeNumber]


def partial_model(model: type[BaseModel]) -> type[BaseModel]:
    """`model` with every field optional: a partial update, merged onto stored values and then
    validated whole by `model` itself."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation: Any = info.annotation
        if info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]
        # Omitted means "keep the stored value"; null is not a value, so the type stays as is.
        fields[name] = (annotation, Field(default=None, json_schema_extra=_no_default))
    return create_model(f"{model.__name__}Update", __config__=ConfigDict(extra="forbid"), **fields)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


if TYPE_CHECKING:
    ScalingConfigurationUpdate = BaseModel
    ChunkingConfigurationUpdate = BaseModel
else:
    ScalingConfigurationUpdate = partial_model(ScalingConfiguration)
    ChunkingConfigurationUpdate = partial_model(ChunkingConfiguration)


# OpenAPI answers of a route: status -> body model.
Responses = dict[str | int | HTTPStatus, type[BaseModel] | dict[Any, Any] | None]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelPath(BaseModel):
    model_pk: int = Field(ge=1, le=INT32_MAX)


class PortfolioPath(BaseModel):
    portfolio_pk: int = Field(ge=1, le=INT32_MAX)


class AnalysisPath(BaseModel):
    analysis_pk: int = Field(ge=1, le=INT32_MAX)


class TaskPath(BaseModel):
    task_pk: int = Field(ge=1, le=INT32_MAX)


class ModelIn(Strict):
    supplier_id: Identifier
    model_id: Identifier
    version_id: Identifier
    data_files: list[Id] = Field(
        default_factory=list, max_length=0, description="Not supported: must be empty."
    )


class ModelOut(BaseModel):
    id: int
    supplier_id: str
    model_id: str
    version_id: str
    queue_name: str
    created: Timestamp
    modified: Timestamp
    data_files: list[int]
    run_mode: str
    groups: list[str]
    settings: str
    scaling_configuration: str
    chunking_configuration: str


class PortfolioIn(Strict):
    name: Name


class StoredFile(BaseModel):
    uri: str
    name: str
    stored: str
    rows: int


class PortfolioOut(BaseModel):
    id: int
    name: str
    created: Timestamp
    modified: Timestamp
    groups: list[str]
    location_file: StoredFile | None
    accounts_file: None = None
    reinsurance_info_file: None = None
    reinsurance_scope_file: None = None


class AnalysisIn(Strict):
    name: Name
    portfolio: Id
    model: Id
    priority: Annotated[StrictInt, Field(ge=1, le=10), WholeNumber] = 4
    complex_model_data_files: list[Id] = Field(
        default_factory=list, max_length=0, description="Not supported: must be empty."
    )


class StatusCount(BaseModel):
    TOTAL_IN_QUEUE: int = 0
    TOTAL: int = 0
    PENDING: int = 0
    QUEUED: int = 0
    STARTED: int = 0
    COMPLETED: int = 0
    CANCELLED: int = 0
    ERROR: int = 0


class AnalysisOut(BaseModel):
    id: int
    name: str
    created: Timestamp
    modified: Timestamp
    portfolio: int
    model: int
    status: str
    run_mode: str
    priority: int
    task_started: Timestamp | None
    task_finished: Timestamp | None
    lookup_chunks: int | None
    analysis_chunks: int | None
    sub_task_count: int
    status_count: StatusCount
    sub_task_error_ids: list[int]
    num_events_total: int
    num_events_complete: int
    groups: list[str]
    complex_model_data_files: list[int]
    settings: str | None
    sub_task_list: str
    chunking_configuration: str
    input_file: str | None
    output_file: str | None
    input_generation_traceback_file: str | None
    run_traceback_file: str | None


class SubTaskOut(BaseModel):
    id: int
    task_id: str
    status: str
    queue_name: str
    name: str
    slug: str
    analysis: int
    pending_time: Timestamp | None
    queue_time: Timestamp | None
    start_time: Timestamp | None
    end_time: Timestamp | None
    retry_count: int
    worker: str | None = Field(description="The worker process that ran it last (host:pid).")
    output_log: str | None
    error_log: str | None
    retry_log: str | None


class QueueModelOut(ModelOut):
    """A model as a queue entry lists it: URLs relative to the API's root, as the platform's."""

    versions: str


class ModelVersions(BaseModel):
    """What runs a model's workers (OasisPlatform's `versions/`)."""

    # Our workers run oasislmf's Python kernel (pytools): no ktools binaries.
    ver_ktools: str | None
    ver_oasislmf: str | None
    ver_platform: str | None


class QueueOut(BaseModel):
    name: str
    pending_count: int
    queued_count: int
    running_count: int
    queue_message_count: int
    worker_count: int
    models: list[QueueModelOut]


class ModelQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    supplier_id: str | None = None
    supplier_id__contains: str | None = None
    model_id: str | None = None
    model_id__contains: str | None = None
    version_id: str | None = None
    version_id__contains: str | None = None


class PortfolioQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    name__contains: str | None = None


class AnalysisQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    name__contains: str | None = None
    status: str | None = None
    status__in: str | None = Field(None, description="Comma-separated statuses.")
    model: int | None = Field(None, ge=1, le=INT32_MAX)
    model__in: str | None = Field(
        None,
        pattern=r"^ *[0-9]{1,10} *(, *[0-9]{1,10} *)*$",
        description="Comma-separated model ids.",
    )
    portfolio: int | None = Field(None, ge=1, le=INT32_MAX)
    run_mode: str | None = None


class TaskQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    analysis: int | None = Field(None, ge=1, le=INT32_MAX)
    status: str | None = None
    slug__contains: str | None = None


class Message(BaseModel):
    detail: str


Reasons = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class FieldErrors(RootModel[Annotated[dict[str, Reasons], Field(min_length=1)]]):
    """A refusal (400): each bad field, or `body` for the body as a whole, with its reasons."""


class JsonObject(RootModel[dict[str, Any]]):
    """Any JSON object."""


class IdList(RootModel[list[int]]):
    """Ids."""


class ModelList(RootModel[list[ModelOut]]):
    """Models, by id."""


class PortfolioList(RootModel[list[PortfolioOut]]):
    """Portfolios, by id."""


class AnalysisList(RootModel[list[AnalysisOut]]):
    """Analyses, by id."""


class SubTaskList(RootModel[list[SubTaskOut]]):
    """Sub-tasks, by id."""


class QueueList(RootModel[list[QueueOut]]):
    """One queue per model, by model id."""


class QueueStatusAnalysis(BaseModel):
    name: str
    id: int
    portfolio: int
    model: int
    status: str
    priority: int
    analysis_chunks: int | None
    lookup_chunks: int | None
    sub_task_count: int
    queue_names: list[str]
    status_count: StatusCount


class QueueStatusEntry(BaseModel):
    analysis: QueueStatusAnalysis
    updated_tasks: list[SubTaskOut]


class QueueStatusContent(BaseModel):
    queue: QueueOut
    analyses: list[QueueStatusEntry]


class QueueStatus(BaseModel):
    """The queues with their active analyses, as the platform's websocket message."""

    time: str
    type: str
    status: str
    content: list[QueueStatusContent]


class Health(BaseModel):
    status: str


class ServerConfig(BaseModel):
    API_AUTH_TYPE: str
    DEFAULT_RUN_MODE: str


class ServerInfo(BaseModel):
    version: str
    config: ServerConfig


def text(media_type: str = "text/plain") -> dict[str, Any]:
    """An OpenAPI answer whose body is text of `media_type` rather than JSON."""
    return {"content": {media_type: {"schema": {"type": "string"}}}}


def binary(media_type: str) -> dict[str, Any]:
    """An OpenAPI answer whose body is a file of `media_type`."""
    return {"content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}


# The answers every route of a blueprint documents. flask-openapi3 gives each operation a 400 for
# its request validation; stated here, it has the shape the API answers with (not pydantic's list).
REFUSALS: Responses = {400: FieldErrors}
# Routes that need the access token (`BEARER`, the app's `jwt` security scheme) answer 401 too.
PROTECTED: Responses = {**REFUSALS, 401: Message}
BEARER: list[dict[str, list[str]]] = [{"jwt": []}]

"""/v2/models/: models, their settings, and their scaling and chunking configurations."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api import db, serialize
from api.configurations import merge
from api.errors import bad_request, not_found
from api.filters import apply_filters
from api.replies import Reply
from api.schemas import (
    BEARER,
    PROTECTED,
    ChunkingConfigurationUpdate,
    IdList,
    JsonObject,
    Message,
    ModelIn,
    ModelList,
    ModelOut,
    ModelPath,
    ModelQuery,
    ModelVersions,
    Responses,
    ScalingConfigurationUpdate,
)
from api.store.configurations import stored
from api.store.orm import Model
from scaler.configuration import ScalingConfiguration
from worker.configuration import ChunkingConfiguration

bp = APIBlueprint(
    "models",
    __name__,
    url_prefix="/v2/models",
    abp_tags=[Tag(name="models")],
    abp_security=BEARER,
    abp_responses=PROTECTED,
)
NOT_FOUND: Responses = {404: Message}


def get_model(model_pk: int) -> Model:
    row = db.session().get(Model, model_pk)
    if row is None:
        raise not_found(f"model {model_pk}")
    return row


@bp.get("/", responses={200: ModelList})
def list_models(query: ModelQuery) -> Reply:
    """Models, filtered as OasisPlatform filters them (exact match is case-insensitive)."""
    statement = apply_filters(select(Model), Model, query)
    return jsonify([serialize.model(m) for m in db.session().scalars(statement.order_by(Model.id))])


@bp.post("/", responses={201: ModelOut})
def create_model(body: ModelIn) -> Reply:
    """Register a model; its queue is `<supplier_id>-<model_id>-<version_id>`."""
    row = Model(supplier_id=body.supplier_id, model_id=body.model_id, version_id=body.version_id)
    _save_unique(row)
    return jsonify(serialize.model(row)), 201


@bp.get("/<int:model_pk>/", responses={200: ModelOut, **NOT_FOUND})
def get_one(path: ModelPath) -> Reply:
    return jsonify(serialize.model(get_model(path.model_pk)))


@bp.put("/<int:model_pk>/", responses={200: ModelOut, **NOT_FOUND})
def update_model(path: ModelPath, body: ModelIn) -> Reply:
    row = get_model(path.model_pk)
    row.supplier_id, row.model_id, row.version_id = body.supplier_id, body.model_id, body.version_id
    _save_unique(row)
    return jsonify(serialize.model(row))


@bp.delete("/<int:model_pk>/", responses={204: None, **NOT_FOUND})
def delete_model(path: ModelPath) -> Reply:
    session = db.session()
    session.delete(get_model(path.model_pk))
    session.commit()
    return "", 204


@bp.get("/<int:model_pk>/data_files", responses={200: IdList, **NOT_FOUND})
def data_files(path: ModelPath) -> Reply:
    """Complex-model data files are not supported: always an empty list."""
    get_model(path.model_pk)
    return jsonify([])


@bp.get("/<int:model_pk>/versions/", responses={200: ModelVersions, **NOT_FOUND})
def versions(path: ModelPath) -> Reply:
    """What runs the model's workers: this package and the oasislmf kernel (no ktools)."""
    get_model(path.model_pk)
    return jsonify(
        ModelVersions(
            ver_ktools=None,
            ver_oasislmf=_installed("oasislmf"),
            ver_platform=_installed("oasis-autoscaler"),
        ).model_dump()
    )


def _installed(package: str) -> str | None:
    try:
        return package_version(package)
    except PackageNotFoundError:  # running from a source tree that is not installed
        return None


@bp.get("/<int:model_pk>/settings/", responses={200: JsonObject, **NOT_FOUND})
def get_settings(path: ModelPath) -> Reply:
    """The model settings JSON (`model_settings.event_set.options[].number_of_events` matters)."""
    row = get_model(path.model_pk)
    if row.settings is None:
        raise not_found(f"settings of model {path.model_pk}")
    return jsonify(row.settings)


@bp.post("/<int:model_pk>/settings/", responses={200: JsonObject, **NOT_FOUND})
def post_settings(path: ModelPath, body: JsonObject) -> Reply:
    row = get_model(path.model_pk)
    row.settings = body.root
    db.session().commit()
    return jsonify(row.settings)


@bp.delete("/<int:model_pk>/settings/", responses={204: None, **NOT_FOUND})
def delete_settings(path: ModelPath) -> Reply:
    row = get_model(path.model_pk)
    row.settings = None
    db.session().commit()
    return "", 204


@bp.get(
    "/<int:model_pk>/scaling_configuration/", responses={200: ScalingConfiguration, **NOT_FOUND}
)
def get_scaling(path: ModelPath) -> Reply:
    """The model's scaling configuration; defaults where unset."""
    return jsonify(scaling_of(get_model(path.model_pk)).model_dump(mode="json"))


@bp.post(
    "/<int:model_pk>/scaling_configuration/", responses={200: ScalingConfiguration, **NOT_FOUND}
)
def post_scaling(path: ModelPath, body: ScalingConfigurationUpdate) -> Reply:
    """Merge the given fields onto the stored configuration; refuse the whole if any is bad."""
    row = get_model(path.model_pk)
    merged = merge(scaling_of(row), body)
    row.scaling_configuration = merged.model_dump(mode="json")
    db.session().commit()
    return jsonify(row.scaling_configuration)


@bp.get(
    "/<int:model_pk>/chunking_configuration/", responses={200: ChunkingConfiguration, **NOT_FOUND}
)
def get_chunking(path: ModelPath) -> Reply:
    """The model's chunking configuration; defaults where unset."""
    return jsonify(chunking_of(get_model(path.model_pk)).model_dump(mode="json"))


@bp.post(
    "/<int:model_pk>/chunking_configuration/", responses={200: ChunkingConfiguration, **NOT_FOUND}
)
def post_chunking(path: ModelPath, body: ChunkingConfigurationUpdate) -> Reply:
    """Merge the given fields onto the stored configuration; refuse the whole if any is bad."""
    row = get_model(path.model_pk)
    merged = merge(chunking_of(row), body)
    row.chunking_configuration = merged.model_dump(mode="json")
    db.session().commit()
    return jsonify(row.chunking_configuration)


def scaling_of(row: Model) -> ScalingConfiguration:
    return stored(ScalingConfiguration, row.scaling_configuration, f"model {row.id}")


def chunking_of(row: Model) -> ChunkingConfiguration:
    return stored(ChunkingConfiguration, row.chunking_configuration, f"model {row.id}")


def _save_unique(row: Model) -> None:
    session = db.session()
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise bad_request("version_id", f"A model {row.queue_name} already exists.") from None

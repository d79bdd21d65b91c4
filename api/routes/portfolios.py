"""/v2/portfolios/: portfolios and their location files."""

from __future__ import annotations

from flask import current_app, jsonify, request, send_file
from flask_openapi3 import APIBlueprint, FileStorage, Tag
from pydantic import BaseModel
from sqlalchemy import select

from api import db, serialize
from api.errors import not_found
from api.files import checked_location_file
from api.filters import apply_filters
from api.replies import Reply
from api.schemas import (
    BEARER,
    PROTECTED,
    Message,
    PortfolioIn,
    PortfolioList,
    PortfolioOut,
    PortfolioPath,
    PortfolioQuery,
    Responses,
    text,
)
from api.settings import ApiSettings
from api.store.orm import Portfolio
from worker.storage import Storage

bp = APIBlueprint(
    "portfolios",
    __name__,
    url_prefix="/v2/portfolios",
    abp_tags=[Tag(name="portfolios")],
    abp_security=BEARER,
    abp_responses=PROTECTED,
)
NOT_FOUND: Responses = {404: Message}


class LocationFileForm(BaseModel):
    file: FileStorage


def get_portfolio(portfolio_pk: int) -> Portfolio:
    row = db.session().get(Portfolio, portfolio_pk)
    if row is None:
        raise not_found(f"portfolio {portfolio_pk}")
    return row


def _settings() -> ApiSettings:
    settings: ApiSettings = current_app.config["SETTINGS"]
    return settings


def storage() -> Storage:
    shared: Storage = current_app.extensions["storage"]
    return shared


@bp.get("/", responses={200: PortfolioList})
def list_portfolios(query: PortfolioQuery) -> Reply:
    statement = apply_filters(select(Portfolio), Portfolio, query).order_by(Portfolio.id)
    return jsonify([serialize.portfolio(p) for p in db.session().scalars(statement)])


@bp.post("/", responses={201: PortfolioOut})
def create_portfolio(body: PortfolioIn) -> Reply:
    row = Portfolio(name=body.name)
    session = db.session()
    session.add(row)
    session.commit()
    return jsonify(serialize.portfolio(row)), 201


@bp.get("/<int:portfolio_pk>/", responses={200: PortfolioOut, **NOT_FOUND})
def get_one(path: PortfolioPath) -> Reply:
    return jsonify(serialize.portfolio(get_portfolio(path.portfolio_pk)))


@bp.put("/<int:portfolio_pk>/", responses={200: PortfolioOut, **NOT_FOUND})
def update_portfolio(path: PortfolioPath, body: PortfolioIn) -> Reply:
    row = get_portfolio(path.portfolio_pk)
    row.name = body.name
    db.session().commit()
    return jsonify(serialize.portfolio(row))


@bp.delete("/<int:portfolio_pk>/", responses={204: None, **NOT_FOUND})
def delete_portfolio(path: PortfolioPath) -> Reply:
    row = get_portfolio(path.portfolio_pk)
    stored = row.location_file_stored
    session = db.session()
    session.delete(row)
    session.commit()
    _remove(stored)
    return "", 204


@bp.get("/<int:portfolio_pk>/location_file/", responses={200: text("text/csv"), **NOT_FOUND})
def get_location_file(path: PortfolioPath) -> Reply:
    """The uploaded location file, as `text/csv` (the client checks the type exactly)."""
    row = get_portfolio(path.portfolio_pk)
    if not row.location_file_stored:
        raise not_found(f"location file of portfolio {path.portfolio_pk}")
    response = send_file(
        storage().upload(row.location_file_stored),
        mimetype="text/csv",
        as_attachment=True,
        download_name=row.location_file_name or "location.csv",
    )
    response.headers["Content-Type"] = "text/csv"
    return response


@bp.post("/<int:portfolio_pk>/location_file/", responses={200: PortfolioOut, **NOT_FOUND})
def post_location_file(path: PortfolioPath, form: LocationFileForm) -> Reply:
    """Upload an OED location file as the multipart field `file`; it must be CSV with data rows."""
    row = get_portfolio(path.portfolio_pk)
    settings = _settings()
    stored, rows = checked_location_file(
        request.files.get("file"), storage().uploads, settings.max_upload_bytes
    )
    previous = row.location_file_stored
    row.location_file_name = _file_name(form.file.filename)
    row.location_file_stored, row.location_file_rows = stored, rows
    db.session().commit()
    _remove(previous)
    return jsonify(serialize.portfolio(row))


@bp.delete("/<int:portfolio_pk>/location_file/", responses={204: None, **NOT_FOUND})
def delete_location_file(path: PortfolioPath) -> Reply:
    row = get_portfolio(path.portfolio_pk)
    if not row.location_file_stored:
        raise not_found(f"location file of portfolio {path.portfolio_pk}")
    previous = row.location_file_stored
    row.location_file_name = row.location_file_stored = row.location_file_rows = None
    db.session().commit()
    _remove(previous)
    return "", 204


def _file_name(given: str | None) -> str:
    """The client's name for the file as the column can hold it: no NUL, at most 255 characters
    (the last ones, to keep the extension). PostgreSQL refuses anything else."""
    name = (given or "").replace("\x00", "")[-255:]
    return name or "location.csv"


def _remove(stored: str | None) -> None:
    if stored:
        storage().remove(storage().upload(stored))

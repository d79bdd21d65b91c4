"""The API's tables (SQLAlchemy 2). Schema changes go through an Alembic migration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from worker.messages import model_queue


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Timestamped:
    created: Mapped[datetime] = mapped_column(default=utcnow)
    modified: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))


class Model(Timestamped, Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("supplier_id", "model_id", "version_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    supplier_id: Mapped[str] = mapped_column(String(255))
    model_id: Mapped[str] = mapped_column(String(255))
    version_id: Mapped[str] = mapped_column(String(255))
    settings: Mapped[dict[str, Any] | None]
    # Only the fields set through the API; defaults fill the rest when read.
    scaling_configuration: Mapped[dict[str, Any] | None]
    chunking_configuration: Mapped[dict[str, Any] | None]
    # Seconds from the last input chunk ending to the first loss chunk queued, in the latest
    # analysis to have both (written by the workers; the scaler's `oasis_model_stage_gap_seconds`).
    stage_gap_seconds: Mapped[float | None] = mapped_column(Float)

    @property
    def queue_name(self) -> str:
        return model_queue(self.supplier_id, self.model_id, self.version_id)


class Portfolio(Timestamped, Base):
    __tablename__ = "portfolios"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    location_file_name: Mapped[str | None] = mapped_column(String(255))
    location_file_stored: Mapped[str | None] = mapped_column(String(255))
    location_file_rows: Mapped[int | None]


class Analysis(Timestamped, Base):
    __tablename__ = "analyses"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("portfolios.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(40), default="NEW")
    run_mode: Mapped[str] = mapped_column(String(4), default="V2")
    priority: Mapped[int] = mapped_column(Integer, default=4)
    settings: Mapped[dict[str, Any] | None]
    chunking_override: Mapped[dict[str, Any] | None]
    task_started: Mapped[datetime | None]
    task_finished: Mapped[datetime | None]
    lookup_chunks: Mapped[int | None]
    analysis_chunks: Mapped[int | None]
    num_events_total: Mapped[int] = mapped_column(Integer, default=0)
    num_events_complete: Mapped[int] = mapped_column(Integer, default=0)
    input_generation_traceback: Mapped[str | None] = mapped_column(Text)
    run_traceback: Mapped[str | None] = mapped_column(Text)

    portfolio: Mapped[Portfolio] = relationship()
    model: Mapped[Model] = relationship()
    sub_tasks: Mapped[list[SubTask]] = relationship(
        back_populates="analysis", cascade="all, delete-orphan", order_by="SubTask.id"
    )


class SubTask(Base):
    """One sub-task of an analysis stage (upstream: AnalysisTaskStatus)."""

    __tablename__ = "sub_tasks"
    __table_args__ = (UniqueConstraint("analysis_id", "stage", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"))
    # "inputs" or "losses": both stages have a sub-task slugged `cleanup`.
    stage: Mapped[str] = mapped_column(String(10))
    task_id: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(20), default="PENDING")
    queue_name: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(255))
    pending_time: Mapped[datetime | None] = mapped_column(default=utcnow)
    queue_time: Mapped[datetime | None]
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    # Which worker process ran it last (<hostname>:<pid>), for the Gantt chart of sub-tasks.
    worker: Mapped[str | None] = mapped_column(String(255))
    output_log: Mapped[str | None] = mapped_column(Text)
    error_log: Mapped[str | None] = mapped_column(Text)
    retry_log: Mapped[str | None] = mapped_column(Text)
    # The broker message that queued it (JSON), kept so that a message the broker lost can be
    # published again as it was (worker/reconcile.py).
    message: Mapped[str | None] = mapped_column(Text)

    analysis: Mapped[Analysis] = relationship(back_populates="sub_tasks")

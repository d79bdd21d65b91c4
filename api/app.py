"""The application factory: settings in, a ready Flask app out."""

from __future__ import annotations

from flask_openapi3 import Info, OpenAPI
from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from api import auth, db, errors, metrics, queueing
from api.routes import analyses, info, models, portfolios, queues, tasks
from api.schemas import FieldErrors
from api.settings import ApiSettings
from api.store.engine import make_engine
from worker.storage import Storage

BLUEPRINTS = (info.bp, auth.bp, models.bp, portfolios.bp, analyses.bp, tasks.bp, queues.bp)


def create_app(settings: ApiSettings | None = None) -> OpenAPI:
    settings = settings or ApiSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = OpenAPI(
        __name__,
        info=Info(
            title="oasis-autoscaler API",
            version=info._version(),
            description="The OasisPlatform v2 API for models, portfolios and analyses, "
            "with each model's scaling and chunking configuration.",
        ),
        security_schemes={"jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        doc_ui=False,
        validation_error_status=400,
        validation_error_model=FieldErrors,
        validation_error_callback=errors.validation_error_response,
    )
    app.url_map.strict_slashes = False
    app.config.update(
        SETTINGS=settings,
        JWT_SECRET=auth.jwt_secret(settings),
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + 1024 * 1024,
    )
    engine = make_engine(settings.effective_database_url)
    db.migrate(engine)
    db.init_app(app, engine)
    errors.init_app(app)
    auth.init_app(app)
    queueing.init_app(app, settings.redis_url)
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    metrics.init_app(app, settings.redis_url, registry)
    app.extensions["metrics_registry"] = registry
    app.extensions["storage"] = Storage(settings.data_dir)
    for blueprint in BLUEPRINTS:
        app.register_api(blueprint)
    with app.app_context():
        auth.ensure_admin(settings)
    return app

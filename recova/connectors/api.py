"""Ingestion over the API: mappings, uploads, HTTP sources, runs, progress and row errors."""

from __future__ import annotations

from typing import Any

from flask import Response, stream_with_context
from flask.views import MethodView
from sqlalchemy import select

from recova.connectors import registry, services
from recova.connectors import settings as ingestion_settings
from recova.connectors.fields import FIELDS
from recova.connectors.models import (
    FeedKind,
    HttpSource,
    IngestionFile,
    IngestionMapping,
    IngestionRun,
)
from recova.connectors.schemas import (
    ConnectorSchema,
    FieldInfoSchema,
    FieldsQuerySchema,
    FileSchema,
    IngestionSettingsSchema,
    MappingInSchema,
    MappingSchema,
    MappingUpdateSchema,
    RunErrorsQuerySchema,
    RunInSchema,
    RunQuerySchema,
    RunSchema,
    SourceInSchema,
    SourceSchema,
    UploadSchema,
)
from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.auth.principal import current_principal
from recova.platform.kernel.api import (
    Blueprint,
    FileUpload,
    SelectPage,
    StrictSchema,
    one_or_404,
    tenant_routes,
)
from recova.platform.kernel.errors import abort
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.tenants.scope import current_tenant

blp = Blueprint("ingestion", __name__, description="Portfolios and payments in")

WRITERS = (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)
READERS = (Role.TENANT_ADMIN, Role.TENANT_ANALYST, Role.PLATFORM_ADMIN)
SCOPE = "ingest:write"


def _mapping(mapping_id: int) -> IngestionMapping:
    return one_or_404(
        select(IngestionMapping).where(IngestionMapping.id == mapping_id), f"mapping {mapping_id}"
    )


def _run(run_id: int) -> IngestionRun:
    return one_or_404(select(IngestionRun).where(IngestionRun.id == run_id), f"run {run_id}")


def _with_progress(run: IngestionRun) -> IngestionRun:
    run.progress = services.run_progress(platform(), current_tenant(), run)  # type: ignore[attr-defined]
    return run


@tenant_routes(blp, "/ingestion/fields")
class Fields(MethodView):
    @access(*READERS, scope=SCOPE, tenant=True)
    @blp.arguments(FieldsQuerySchema, location="query")
    @blp.response(200, FieldInfoSchema(many=True))
    def get(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Recova's fields of a feed, for building a mapping."""
        return [
            {"name": name, "description": spec.description, "required": spec.required}
            for name, spec in FIELDS[query["kind"]].items()
        ]


@tenant_routes(blp, "/ingestion/mappings")
class Mappings(MethodView):
    @access(*READERS, scope=SCOPE, tenant=True)
    @blp.response(200, MappingSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self) -> Any:
        """The tenant's column mappings."""
        return select(IngestionMapping).order_by(IngestionMapping.name)

    @access(*WRITERS, scope=SCOPE, tenant=True)
    @blp.arguments(MappingInSchema)
    @blp.response(201, MappingSchema)
    def post(self, data: dict[str, Any]) -> IngestionMapping:
        """Save a named mapping from source columns to Recova fields."""
        return services.save_mapping(db_session(), **data)


@tenant_routes(blp, "/ingestion/mappings/<int:mapping_id>")
class MappingItem(MethodView):
    @access(*READERS, scope=SCOPE, tenant=True)
    @blp.response(200, MappingSchema)
    def get(self, mapping_id: int) -> IngestionMapping:
        """One mapping."""
        return _mapping(mapping_id)

    @access(*WRITERS, scope=SCOPE, tenant=True)
    @blp.arguments(MappingUpdateSchema)
    @blp.response(200, MappingSchema)
    def put(self, data: dict[str, Any], mapping_id: int) -> IngestionMapping:
        """Replace a mapping's columns and options; runs already started keep the old ones."""
        mapping = _mapping(mapping_id)
        return services.save_mapping(
            db_session(), name=mapping.name, kind=mapping.kind, mapping=mapping, **data
        )


class UploadFileSchema(StrictSchema, UploadSchema):
    """The multipart upload: the file part and the form's own fields."""

    file = FileUpload(required=True, metadata={"description": "CSV, .xlsx or JSON lines"})


@tenant_routes(blp, "/ingestion/files")
class Files(MethodView):
    @access(*WRITERS, scope=SCOPE, tenant=True)
    @blp.arguments(UploadFileSchema, location="multipart")
    @blp.response(201, FileSchema)
    def post(self, form: dict[str, Any]) -> IngestionFile:
        """Upload a portfolio or payment file (multipart ``file``); start a run with it next.

        CSV (UTF-8 or GBK/GB18030, delimiter sniffed), Excel ``.xlsx`` or JSON lines, up to
        ``RECOVA_MAX_UPLOAD_BYTES``. The bytes are stored encrypted until a run reads them.
        """
        upload = form["file"]
        return services.store_file(
            db_session(),
            platform(),
            filename=upload.filename or "upload",
            stream=upload.stream,
            connector=form.get("connector"),
        )


@tenant_routes(blp, "/ingestion/sources")
class Sources(MethodView):
    @access(*READERS, scope=SCOPE, tenant=True)
    @blp.response(200, SourceSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self) -> Any:
        """The tenant's registered HTTP sources (auth values are never shown)."""
        return select(HttpSource).order_by(HttpSource.name)

    @access(*WRITERS, scope=SCOPE, tenant=True)
    @blp.arguments(SourceInSchema)
    @blp.response(201, SourceSchema)
    def post(self, data: dict[str, Any]) -> HttpSource:
        """Register a paginated JSON endpoint to pull from."""
        return services.register_source(db_session(), platform(), **data)


@tenant_routes(blp, "/ingestion/runs")
class Runs(MethodView):
    @access(*READERS, scope=SCOPE, tenant=True)
    @blp.arguments(RunQuerySchema, location="query")
    @blp.response(200, RunSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, query: dict[str, Any]) -> Any:
        """The tenant's ingestion runs, newest first."""
        statement = select(IngestionRun).order_by(IngestionRun.id.desc())
        if "status" in query:
            statement = statement.where(IngestionRun.status == query["status"])
        if "kind" in query:
            statement = statement.where(IngestionRun.kind == query["kind"])
        return statement

    @access(*WRITERS, scope=SCOPE, tenant=True)
    @blp.arguments(RunInSchema)
    @blp.response(202, RunSchema)
    def post(self, data: dict[str, Any]) -> IngestionRun:
        """Start a run: load a file or pull a source through a mapping, in the background."""
        session = db_session()
        mapping = services.mapping_by_name(session, data["mapping"])
        if mapping is None:
            abort(422, message="no such mapping", errors={"json": {"mapping": ["unknown"]}})
        file = source = None
        if "file_id" in data:
            file = session.get(IngestionFile, data["file_id"])
            if file is None:
                abort(422, message="no such file", errors={"json": {"file_id": ["unknown"]}})
        if "source_id" in data:
            source = session.get(HttpSource, data["source_id"])
            if source is None:
                abort(422, message="no such source", errors={"json": {"source_id": ["unknown"]}})
        principal = current_principal()
        requested_by = principal.subject_id if principal and not principal.is_client else None
        run = services.start_run(
            session,
            platform(),
            tenant=current_tenant(),
            mapping=mapping,
            file=file,
            source=source,
            mode=data["mode"],
            all_or_nothing=data["all_or_nothing"],
            as_of=data.get("as_of"),
            requested_by=requested_by,
            confirm_recall=data["confirm_recall"],
        )
        return _with_progress(run)


@tenant_routes(blp, "/ingestion/runs/<int:run_id>")
class RunItem(MethodView):
    @access(*READERS, scope=SCOPE, tenant=True)
    @blp.response(200, RunSchema)
    def get(self, run_id: int) -> IngestionRun:
        """A run's status, counts and progress (rows done of the estimated total)."""
        return _with_progress(_run(run_id))


@tenant_routes(blp, "/ingestion/runs/<int:run_id>/resume")
class RunResume(MethodView):
    @access(*WRITERS, scope=SCOPE, tenant=True)
    @blp.response(202, RunSchema)
    def post(self, run_id: int) -> IngestionRun:
        """Queue a failed or interrupted run again; it continues after its last checkpoint."""
        run = _run(run_id)
        services.resume_run(db_session(), platform(), tenant=current_tenant(), run=run)
        return _with_progress(run)


@tenant_routes(blp, "/ingestion/runs/<int:run_id>/confirm-recall")
class RunConfirmRecall(MethodView):
    @access(*WRITERS, scope=SCOPE, tenant=True)
    @blp.response(202, RunSchema)
    def post(self, run_id: int) -> IngestionRun:
        """Let a held snapshot recall the accounts it did not mention; its job finishes it.

        A snapshot is held when it would recall more of the open book than the tenant's
        recall guard allows. Refused (409) if the run is not held, or a later portfolio
        run has finished since.
        """
        run = _run(run_id)
        principal = current_principal()
        assert principal is not None
        services.confirm_recall(
            db_session(), platform(), tenant=current_tenant(), run=run, actor=principal
        )
        return _with_progress(run)


@tenant_routes(blp, "/ingestion/settings")
class Settings(MethodView):
    @access(*READERS, scope=SCOPE, tenant=True)
    @blp.response(200, IngestionSettingsSchema)
    def get(self) -> Any:
        """The snapshot recall guard: on or off, and the share of the open book a snapshot
        may recall without a confirmation (defaults until saved: on, 20%)."""
        return ingestion_settings.current_settings(db_session())

    @access(Role.TENANT_ADMIN, tenant=True)
    @blp.arguments(IngestionSettingsSchema)
    @blp.response(200, IngestionSettingsSchema)
    def put(self, data: dict[str, Any]) -> Any:
        """Replace the settings; the change is an audit event."""
        principal = current_principal()
        assert principal is not None
        return ingestion_settings.save_settings(db_session(), actor=principal, **data)


@tenant_routes(blp, "/ingestion/runs/<int:run_id>/errors")
class RunErrors(MethodView):
    @access(*READERS, scope=SCOPE, tenant=True)
    @blp.arguments(RunErrorsQuerySchema, location="query")
    @blp.response(200, content_type="text/csv")
    def get(self, query: dict[str, Any], run_id: int) -> Response:
        """The run's rejected rows and warnings as CSV: row, column, value (masked if
        personal), reason, severity (``error``: rejected; ``warning``: loaded without the
        contact point named). ``?severity=warning`` (or ``error``) downloads one kind."""
        run = _run(run_id)
        principal = current_principal()
        assert principal is not None
        rows = services.export_row_errors(
            db_session(), run, actor=principal, severity=query.get("severity")
        )
        return Response(
            stream_with_context(rows),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="run-{run.id}-errors.csv"'},
        )


@tenant_routes(blp, "/ingestion/connectors")
class Connectors(MethodView):
    @access(*READERS, scope=SCOPE, tenant=True)
    @blp.response(200, ConnectorSchema(many=True))
    def get(self) -> list[dict[str, str]]:
        """The connectors installed (built-in and plugins)."""
        return [{"name": name} for name in registry.available_connectors()]


__all__ = ["FeedKind", "blp"]

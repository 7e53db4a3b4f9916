"""The audit chain over the API: events, verification and the exported heads.

Tenant admins (and platform admins naming the tenant) read their tenant's chain; API
clients need the ``audit:read`` scope. Reading the chain is not itself audited: a GET
never writes, and the chain is no personal data.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from recova.platform.audit import schemas
from recova.platform.audit.chain import Verdict
from recova.platform.audit.models import AuditEvent, AuditHeadExport
from recova.platform.audit.services import events, verify_chain
from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.kernel.api import tenant_routes
from recova.platform.kernel.request_scope import db_session

blp = Blueprint("audit", __name__, description="The tenant's hash-chained audit log")

READERS = (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)


@tenant_routes(blp, "/audit/events")
class EventCollection(MethodView):
    @access(*READERS, scope="audit:read", tenant=True)
    @blp.arguments(schemas.EventQuerySchema, location="query")
    @blp.response(200, schemas.EventSchema(many=True))
    def get(self, query: dict[str, Any]) -> list[AuditEvent]:
        """Events in chain order after ``after_seq``; ``action`` ending in ``.`` is a prefix.

        Each event carries its canonical data text and both hashes, so a page of events
        is all a tenant needs to re-check those links outside Recova (see README).
        """
        subject = None
        if "subject_type" in query:
            subject = (query["subject_type"], query["subject_id"])
        return events(
            db_session(),
            action=query.get("action"),
            subject=subject,
            after_seq=query["after_seq"],
            limit=query["limit"],
        )


@tenant_routes(blp, "/audit/verify")
class Verify(MethodView):
    @access(*READERS, scope="audit:read", tenant=True)
    @blp.arguments(schemas.VerifyQuerySchema, location="query")
    @blp.response(200, schemas.VerdictSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Verify every link: OK with the head hash, or the first broken index.

        Pass a head you kept (``head_seq`` and ``head_hash``) to also prove the chain was
        not rewritten from some point on since you took it.
        """
        expected = None
        if "head_seq" in query:
            expected = (query["head_seq"], bytes.fromhex(query["head_hash"]))
        verdict: Verdict = verify_chain(db_session(), expected_head=expected)
        return verdict.as_dict()


@tenant_routes(blp, "/audit/heads")
class HeadCollection(MethodView):
    @access(*READERS, scope="audit:read", tenant=True)
    @blp.response(200, schemas.HeadExportSchema(many=True))
    def get(self) -> list[AuditHeadExport]:
        """The daily exported heads, newest first (the last 400 days)."""
        query = select(AuditHeadExport).order_by(AuditHeadExport.day.desc()).limit(400)
        return list(db_session().scalars(query))

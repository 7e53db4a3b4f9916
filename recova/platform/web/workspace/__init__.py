"""The agency workspace: collectors work their queue, managers run their team.

Two kinds of page live under ``/work/``:

- the agency's own pages (``/work/``, ``/work/team``, ...), across every tenant the
  agency serves: each tenant's data is read by its own query on its own schema, and every
  row names its tenant; nothing a collector sends chooses a schema;
- a case's pages (``/work/<tenant_slug>/cases/<id>...``), bound to that tenant exactly as
  the API binds ``/api/v1/tenants/<slug>/``: a tenant the agency holds no contract with is
  404, and the case must be within the caller's reach (``recova.platform.auth.reach``: a
  collector's own assignment, a manager's agency's placement), else 404 as well.

Pages carry ``@workspace_page`` (collectors and managers), ``@manager_page`` (managers
only) or ``@workspace_case_page`` (a case's pages, the tenant bound), from
``recova.platform.web.pages``. A section's pages are named after it (``queue``,
``queue_case``, ``queue_case_call``) so the navigation marks the section. Views are thin:
they read forms and call the domains' services, never the API over HTTP.
"""

from __future__ import annotations

from flask import Blueprint

blp = Blueprint("workspace", __name__, url_prefix="/work")

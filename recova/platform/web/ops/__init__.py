"""The platform operator's pages: tenants, agencies and their contracts, staff, and jobs.

Every page lives under ``/ops/`` and carries ``@ops_page`` (``common``): platform admins
only, who read and change. One module per section; each registers its routes on ``blp``,
and a section's own pages are named after it (``agencies``, ``agencies_detail``) so the
navigation marks the section. Views are thin: they read forms and call the services the
JSON API calls, never the API over HTTP.
"""

from __future__ import annotations

from flask import Blueprint

blp = Blueprint("ops", __name__, url_prefix="/ops")

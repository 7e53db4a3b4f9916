"""The tenant admin portal: a lender's operations staff run their book from the browser.

Every page lives under ``/portal/<tenant_slug>/`` and carries ``@portal_page``
(``recova.platform.web.pages``): the tenant's admins and analysts read, admins change.
One module per section; each registers its routes on ``blp``, and a section's own pages
are named after it (``cases``, ``cases_detail``) so the navigation marks the section.
Views are thin: they read forms and call the domains' services, never the API over HTTP.
"""

from __future__ import annotations

from flask import Blueprint

blp = Blueprint("portal", __name__, url_prefix="/portal/<slug:tenant_slug>")

"""The application factory: builds and binds everything, and never queries at start-up."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from flask import Flask, Response, request, send_from_directory, session
from flask_smorest import Api
from flask_wtf.csrf import CSRFError, CSRFProtect
from redis import Redis
from werkzeug.exceptions import HTTPException

from recova.billing.api import billing_blp as billing
from recova.billing.api import blp as contracts
from recova.connectors.api import blp as ingestion
from recova.platform.agencies.api import blp as agencies
from recova.platform.allocation.api import blp as allocation
from recova.platform.audit.api import blp as audit
from recova.platform.audit.requests import record_api_write
from recova.platform.auth.access import SCOPES, pop_named_tenant
from recova.platform.auth.api import blp as auth
from recova.platform.auth.oauth import TOKEN_PATH, init_oauth
from recova.platform.auth.principal import SESSION_USER_KEY, bearer_token
from recova.platform.auth.ratelimit import rate_limit_policies
from recova.platform.cases.api import blp as cases
from recova.platform.compliance.api import blp as compliance
from recova.platform.contact.api import blp as contact
from recova.platform.entry.health import blp as health
from recova.platform.kernel.api import API_PREFIX, document_api_fields, install_url_converters
from recova.platform.kernel.config import Settings
from recova.platform.kernel.db import Database
from recova.platform.kernel.embedded import with_embedded_services
from recova.platform.kernel.errors import register_error_handlers
from recova.platform.kernel.extension import Platform
from recova.platform.kernel.idempotency import IdempotencyPlugin, init_idempotency, skip_replays
from recova.platform.kernel.logs import (
    configure_logging,
    init_request_logging,
    remember_request_tenant,
)
from recova.platform.kernel.metrics import METRICS_PATH, init_metrics
from recova.platform.kernel.ratelimit import (
    RATE_LIMITED_RESPONSE,
    RateLimitPlugin,
    init_rate_limits,
    rate_limited_response,
)
from recova.platform.kernel.request_scope import init_request_scope
from recova.platform.privacy.api import blp as privacy
from recova.platform.web.auth import blp as web_auth
from recova.platform.web.i18n import init_i18n
from recova.platform.web.ops.routes import ops_blueprint
from recova.platform.web.pages import init_pages, page_error
from recova.platform.web.portal.routes import portal_blueprint
from recova.platform.web.workspace.routes import workspace_blueprint
from recova.platform.webhooks.api import blp as webhooks
from recova.platform.webhooks.jobs import outbox_event_handler
from recova.platform.work.api import blp as work
from recova.tenants.api import blp as tenants
from recova.tenants.slugs import SlugConverter, slug_parameter

WEB_TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
WEB_STATIC = WEB_TEMPLATES.parent / "static"
#: Probes, the metrics scrape and static files spend no rate-limit budget.
_RATE_LIMIT_EXEMPT = ("/healthz", "/readyz", METRICS_PATH, f"{API_PREFIX}/docs/assets/", "/static/")


def _api_blueprints() -> list[Any]:
    """Every API blueprint, registered in this order under ``/api/v1``."""

    return [
        auth,
        tenants,
        agencies,
        contracts,
        cases,
        ingestion,
        allocation,
        audit,
        privacy,
        work,
        contact,
        compliance,
        billing,
        webhooks,
    ]


def _web_blueprints() -> list[Any]:
    """Every server-rendered or plain-Flask blueprint."""

    return [health, web_auth, portal_blueprint(), ops_blueprint(), workspace_blueprint()]


def create_app(config: Settings | Mapping[str, str] | None = None) -> Flask:
    """Build the Flask app from settings (default: the environment)."""
    if config is None:
        settings = Settings.from_env()
    elif isinstance(config, Settings):
        settings = config.with_secrets()
    else:
        settings = Settings.from_env(config)
    settings = with_embedded_services(settings)
    assert settings.database_url is not None
    assert settings.redis_url is not None

    configure_logging(settings.log_level, settings.log_format)
    app = Flask(
        __name__,
        template_folder=str(WEB_TEMPLATES),
        static_folder=str(WEB_STATIC),
        static_url_path="/static",
    )
    install_url_converters(app, {"slug": SlugConverter})
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="recova_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.production,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
        # Uploads: the file itself is checked against the limit as it is stored; this
        # refuses anything bigger (413) before it is read, with room for the multipart form.
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + 64 * 1024,
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in _csrf_guard, which skips bearer calls
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        API_TITLE="Recova",
        API_VERSION="v1",
        # 3.0: the Swagger UI that swagger-ui-bundle ships renders 3.0 documents only.
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=f"{API_PREFIX}/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {"description": "Recova: third-party debt collection as a service."},
            "security": [{"oauth2": []}, {"portalSession": []}],
        },
    )
    database = Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    redis = Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
    )
    objects = Platform(settings=settings, db=database, redis=redis)
    # The outbox's event rows go to the webhooks domain (the kernel knows none of them).
    objects.outbox_events = outbox_event_handler(objects)
    objects.init_app(app)

    # Before the request scope: after_request hooks run in reverse order of registration,
    # so the request's log line and latency include its commit.
    init_request_logging(app)
    init_metrics(app)
    init_request_scope(app, on_write=skip_replays(record_api_write))
    init_idempotency(app)
    remember_request_tenant(app)
    # Before the CSRF check and every view: a caller over its budget is refused first.
    init_rate_limits(
        app,
        redis_url=settings.redis_url,
        connection_pool=redis.connection_pool,
        queue_prefix=settings.queue_prefix,
        policies=rate_limit_policies(settings, exempt_paths=_RATE_LIMIT_EXEMPT),
    )
    csrf = CSRFProtect(app)
    init_i18n(app)
    init_pages(app)

    @app.before_request
    def _csrf_guard() -> None:
        if request.method in ("GET", "HEAD", "OPTIONS") or request.path == TOKEN_PATH:
            return
        if bearer_token() is not None:
            return  # browsers never attach bearer tokens on their own
        if request.path.startswith(API_PREFIX) and SESSION_USER_KEY not in session:
            return  # no cookie principal: the access rule answers 401
        csrf.protect()

    app.url_value_preprocessor(pop_named_tenant)

    api = Api(app, spec_kwargs={"extra_plugins": [IdempotencyPlugin(), RateLimitPlugin()]})
    api.spec.components.response(RATE_LIMITED_RESPONSE, rate_limited_response())
    document_api_fields(api, [(SlugConverter, slug_parameter)])
    api.spec.components.security_scheme(
        "oauth2",
        {
            "type": "oauth2",
            "flows": {"clientCredentials": {"tokenUrl": TOKEN_PATH, "scopes": SCOPES}},
        },
    )
    api.spec.components.security_scheme(
        "portalSession", {"type": "apiKey", "in": "cookie", "name": "recova_session"}
    )
    for blueprint in _api_blueprints():
        api.register_blueprint(blueprint, url_prefix=API_PREFIX)
    for blueprint in _web_blueprints():
        app.register_blueprint(blueprint)
    init_oauth(app, settings.access_token_ttl)
    _register_docs_assets(app)
    _register_error_pages(app, api)
    register_error_handlers(app)
    return app


def _register_docs_assets(app: Flask) -> None:
    @app.get(f"{API_PREFIX}/docs/assets/<path:filename>")
    def swagger_assets(filename: str) -> Response:
        """Swagger UI's own files, served locally so the docs work offline."""
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)


def _csrf_message(error: CSRFError, *, api: bool) -> str:
    """Flask-WTF's reason (missing, expired, invalid, not matching) and what to do next."""
    fix = (
        "Send the X-CSRFToken header with the csrf_token that GET /api/v1/me returns"
        " (it changes when you sign in again)."
        if api
        else "Reload the page and send the form again."
    )
    return f"CSRF check failed: {error.description} {fix}"


def _validation_summary(errors: Mapping[str, Any]) -> str:
    """``invalid json: amount, currency`` from webargs' errors by location and field."""
    parts = [
        f"{location}: {', '.join(sorted(map(str, fields)))}"
        if isinstance(fields, Mapping)
        else location
        for location, fields in errors.items()
    ]
    return f"invalid {'; '.join(parts)}"


def _register_error_pages(app: Flask, api: Api) -> None:
    @app.errorhandler(HTTPException)
    def _error(error: HTTPException) -> Any:
        if request.path.startswith(API_PREFIX) or request.path.startswith("/oauth"):
            body, code, headers = api.handle_http_exception(error)
            # Every error says what went wrong: werkzeug's own (404 of an unknown route,
            # 405, 413, a CSRF failure) carry no message of flask-smorest's kind.
            if isinstance(error, CSRFError):
                body["message"] = _csrf_message(error, api=True)
                body["errors"] = {"headers": {"X-CSRFToken": [str(error.description)]}}
            elif "message" not in body:
                errors = body.get("errors")
                body["message"] = (
                    _validation_summary(errors)
                    if isinstance(errors, Mapping) and errors
                    else str(error.description or error.name)
                )
            # Keep the exception's own headers (405's Allow, RFC 9110 section 15.5.6),
            # which flask-smorest drops; the JSON body brings its own Content-Type.
            own = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
            return body, code, {**own, **(headers or {})}
        return page_error(error), error.code or 500

"""The OAuth2 token endpoint (client-credentials grant), served by Authlib.

Authlib authenticates the client, checks the grant and scopes, generates the token and
formats RFC 6749 responses and errors. Recova supplies the storage: clients are looked
up by id and checked against a SHA-256 digest of their secret, and only the digest of
each issued token is saved. Tokens carry the client's tenant and expire after
``RECOVA_ACCESS_TOKEN_TTL`` seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from flask import Blueprint, Flask, Response
from sqlalchemy import select

from recova.platform.auth.models import OAuthClient, OAuthToken
from recova.platform.auth.principal import token_digest
from recova.platform.auth.services import client_secret_matches
from recova.platform.kernel.db import utcnow
from recova.platform.kernel.request_scope import db_session
from recova.tenants.models import TenantStatus

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path, not a secret


class RegisteredClient(ClientMixin):
    """Authlib's view of a stored ``OAuthClient``."""

    def __init__(self, record: OAuthClient) -> None:
        self.record = record

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = list(self.record.scopes)
        if not scope:
            return " ".join(allowed)
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return client_secret_matches(self.record, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


def _query_client(client_id: str) -> RegisteredClient | None:
    record = db_session().scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    if record is None or record.revoked_at is not None:
        return None
    if record.tenant.status != TenantStatus.ACTIVE:
        return None
    return RegisteredClient(record)


def _save_token(token: dict[str, Any], request: Any) -> None:
    client: OAuthClient = request.client.record
    issued = utcnow()
    db_session().add(
        OAuthToken(
            token_digest=token_digest(token["access_token"]),
            client_pk=client.id,
            tenant_id=client.tenant_id,
            scope=token.get("scope", ""),
            issued_at=issued,
            expires_at=issued + dt.timedelta(seconds=int(token["expires_in"])),
        )
    )


class ClientCredentials(grants.ClientCredentialsGrant):
    """The client-credentials grant, with the secret in a Basic header or the form."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def init_oauth(app: Flask, token_ttl: int) -> AuthorizationServer:
    """Register the token endpoint on ``app``."""
    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"client_credentials": token_ttl}
    server = AuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.register_grant(ClientCredentials)
    blueprint = Blueprint("oauth", __name__)

    @blueprint.post(TOKEN_PATH)
    def issue_token() -> Response:
        """Exchange client credentials for a bearer token (RFC 6749 section 4.4)."""
        return server.create_token_response()

    app.register_blueprint(blueprint)
    return server

"""Routes for the caller (``/me``), user administration and tenants' API clients."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import Select, select
from sqlalchemy.orm import joinedload

from recova.platform.agencies.models import Agency
from recova.platform.auth import services
from recova.platform.auth.access import access
from recova.platform.auth.models import Membership, OAuthClient, Role, User
from recova.platform.auth.principal import Principal, current_principal
from recova.platform.auth.schemas import (
    ApiClientCreateSchema,
    ApiClientSchema,
    IssuedApiClientSchema,
    MeSchema,
    PlatformUserCreateSchema,
    TenantUserCreateSchema,
    UserSchema,
    UserUpdateSchema,
)
from recova.platform.kernel.api import SelectPage, one_or_404, tenant_routes
from recova.platform.kernel.errors import abort
from recova.platform.kernel.request_scope import db_session
from recova.tenants.models import Tenant
from recova.tenants.scope import current_tenant

blp = Blueprint("auth", __name__, description="The caller, users and API clients")


def _users_query() -> Select[User]:
    return select(User).options(
        joinedload(User.membership).joinedload(Membership.tenant),
        joinedload(User.membership).joinedload(Membership.agency),
    )


@blp.route("/me")
class Me(MethodView):
    @access(any_principal=True, scope="tenant:read")
    @blp.response(200, MeSchema)
    def get(self) -> Principal | None:
        """Who the caller is: user or API client, role or scopes, tenant or agency."""
        return current_principal()


@blp.route("/platform/users")
class PlatformUserCollection(MethodView):
    @access(Role.PLATFORM_ADMIN)
    @blp.response(200, UserSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self) -> Any:
        """List every user."""
        return _users_query().order_by(User.id)

    @access(Role.PLATFORM_ADMIN)
    @blp.arguments(PlatformUserCreateSchema)
    @blp.response(201, UserSchema)
    def post(self, data: dict[str, Any]) -> User:
        """Create a user in any organisation."""
        session = db_session()
        tenant = agency = None
        if data["tenant"]:
            tenant = session.scalar(select(Tenant).where(Tenant.slug == data["tenant"]))
            if tenant is None:
                abort(422, message=f"no tenant {data['tenant']!r}")
        if data["agency"]:
            agency = session.scalar(select(Agency).where(Agency.slug == data["agency"]))
            if agency is None:
                abort(422, message=f"no agency {data['agency']!r}")
        return services.create_user(
            session,
            email=data["email"],
            full_name=data["full_name"],
            password=data["password"],
            role=Role(data["role"]),
            tenant=tenant,
            agency=agency,
        )


@blp.route("/platform/users/<int:user_id>")
class PlatformUserItem(MethodView):
    @access(Role.PLATFORM_ADMIN)
    @blp.response(200, UserSchema)
    def get(self, user_id: int) -> User:
        """Show one user."""
        return _user(user_id, tenant_id=None)

    @access(Role.PLATFORM_ADMIN)
    @blp.arguments(UserUpdateSchema)
    @blp.response(200, UserSchema)
    def patch(self, data: dict[str, Any], user_id: int) -> User:
        """Rename, deactivate or reactivate a user."""
        return services.update_user(
            db_session(), _user(user_id, tenant_id=None), by_user_id=_asking_user_id(), **data
        )


@tenant_routes(blp, "/users")
class TenantUserCollection(MethodView):
    @access(Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, tenant=True)
    @blp.response(200, UserSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self) -> Any:
        """List the tenant's users."""
        return (
            _users_query()
            .join(User.membership)
            .where(Membership.tenant_id == current_tenant().id)
            .order_by(User.id)
        )

    @access(Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, tenant=True)
    @blp.arguments(TenantUserCreateSchema)
    @blp.response(201, UserSchema)
    def post(self, data: dict[str, Any]) -> User:
        """Invite a tenant admin or analyst into the tenant."""
        return services.create_user(
            db_session(),
            email=data["email"],
            full_name=data["full_name"],
            password=data["password"],
            role=Role(data["role"]),
            tenant=current_tenant(),
        )


@tenant_routes(blp, "/users/<int:user_id>")
class TenantUserItem(MethodView):
    @access(Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, tenant=True)
    @blp.response(200, UserSchema)
    def get(self, user_id: int) -> User:
        """Show one of the tenant's users."""
        return _user(user_id, tenant_id=current_tenant().id)

    @access(Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, tenant=True)
    @blp.arguments(UserUpdateSchema)
    @blp.response(200, UserSchema)
    def patch(self, data: dict[str, Any], user_id: int) -> User:
        """Rename, deactivate or reactivate one of the tenant's users."""
        user = _user(user_id, tenant_id=current_tenant().id)
        return services.update_user(db_session(), user, by_user_id=_asking_user_id(), **data)


@tenant_routes(blp, "/api-clients")
class ApiClientCollection(MethodView):
    @access(Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, tenant=True)
    @blp.response(200, ApiClientSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self) -> Any:
        """List the tenant's API clients."""
        return (
            select(OAuthClient)
            .where(OAuthClient.tenant_id == current_tenant().id)
            .order_by(OAuthClient.id)
        )

    @access(Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, tenant=True)
    @blp.arguments(ApiClientCreateSchema)
    @blp.response(201, IssuedApiClientSchema)
    def post(self, data: dict[str, Any]) -> services.IssuedClient:
        """Create an API client; its secret is in this response only."""
        principal = current_principal()
        created_by = principal.subject_id if principal and not principal.is_client else None
        return services.create_api_client(
            db_session(),
            tenant=current_tenant(),
            name=data["name"],
            scopes=list(dict.fromkeys(data["scopes"])),
            created_by=created_by,
        )


@tenant_routes(blp, "/api-clients/<int:client_pk>")
class ApiClientItem(MethodView):
    @access(Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, tenant=True)
    @blp.response(200, ApiClientSchema)
    def get(self, client_pk: int) -> OAuthClient:
        """Show one API client."""
        return _client(client_pk)

    @access(Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, tenant=True)
    @blp.response(200, ApiClientSchema)
    def delete(self, client_pk: int) -> OAuthClient:
        """Revoke an API client and all its tokens."""
        return services.revoke_api_client(db_session(), _client(client_pk))


def _asking_user_id() -> int | None:
    """The signed-in user making the request (None for an API client)."""
    principal = current_principal()
    return principal.subject_id if principal and not principal.is_client else None


def _user(user_id: int, *, tenant_id: int | None) -> User:
    """The user (one of ``tenant_id``'s, when given)."""
    query = _users_query().where(User.id == user_id)
    if tenant_id is not None:
        query = query.join(User.membership).where(Membership.tenant_id == tenant_id)
    return one_or_404(query, f"user {user_id}")


def _client(client_pk: int) -> OAuthClient:
    """One of the tenant's API clients."""
    return one_or_404(
        select(OAuthClient).where(
            OAuthClient.id == client_pk, OAuthClient.tenant_id == current_tenant().id
        ),
        f"API client {client_pk}",
    )

"""Tenant registry, schema provisioning, per-tenant migrations and resolving a request's tenant."""

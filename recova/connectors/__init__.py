"""Connector plugins and the ingestion pipeline for portfolios and payment files.

Each tenant's data arrives through a connector into its own schema; see
``recova.tenants.scope.tenant_scope`` for how ingestion reaches tenant tables.
"""

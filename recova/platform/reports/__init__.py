"""Reporting queries: figures of a tenant's book, each one SQL aggregate."""

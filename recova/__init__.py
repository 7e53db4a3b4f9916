"""Recova: a multi-tenant third-party debt-collection platform."""

"""Payments and reversals the tenant reports, as they arrive through ingestion runs."""

"""Signed webhooks (Standard Webhooks) to tenants, fed by the transactional outbox."""

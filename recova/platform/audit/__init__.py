"""The tenant's tamper-evident audit log: append-only, hash-chained, verifiable."""

from recova.platform.audit.services import events, record_event, verify_chain

__all__ = ["events", "record_event", "verify_chain"]

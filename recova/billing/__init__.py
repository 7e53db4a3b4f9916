"""Contracts between tenants and agencies, and (in later work) the commission ledger."""

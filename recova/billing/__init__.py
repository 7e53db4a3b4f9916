"""Billing: agency contracts and payouts, the tenant's contract versions, the commission
ledger, month close, invoices, agency statements and their exports."""

"""Debtors, their contacts, their accounts and the collection cases opened on them."""

"""The entry points: the app factory, the `recova` CLI, worker, scheduler, health and demo.

The top floor: it builds the app and hands collaborators down; nothing imports it.
"""

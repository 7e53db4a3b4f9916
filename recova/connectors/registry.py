"""Finding connectors: every entry point in the ``recova.connectors`` group is one.

The built-in connectors are declared in Recova's own ``pyproject.toml`` exactly as a
third party declares theirs, so installing a distribution is all it takes to add one.
Entry points are read on each call (a scan of installed metadata, a few milliseconds)
rather than cached at import, so importing this module has no side effects and a
distribution installed into a running worker is found by its next run.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from recova.connectors.base import Connector

GROUP = "recova.connectors"


class UnknownConnector(LookupError):
    """No installed distribution provides a connector of that name."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        listed = ", ".join(known) if known else "none"
        super().__init__(f"no connector named {name!r}; the installed ones are: {listed}")


class ConflictingConnectors(LookupError):
    """Two distributions register different connectors under the same name."""


def _registered() -> dict[str, list[EntryPoint]]:
    by_name: dict[str, list[EntryPoint]] = {}
    for entry_point in entry_points(group=GROUP):
        found = by_name.setdefault(entry_point.name, [])
        # The same distribution on sys.path twice (an editable install beside a
        # build, say) lists one target twice; that is no conflict.
        if all(other.value != entry_point.value for other in found):
            found.append(entry_point)
    return by_name


def available_connectors() -> list[str]:
    """The names of the installed connectors, sorted."""
    return sorted(_registered())


def get_connector(name: str, **arguments: Any) -> Connector:
    """A new instance of the connector registered as ``name``.

    ``arguments`` go to the connector's constructor; they are for settings the platform
    (not the tenant) controls, such as ``allow_private_hosts`` for ``http``.
    """
    registered = _registered()
    candidates = registered.get(name)
    if not candidates:
        raise UnknownConnector(name, sorted(registered))
    if len(candidates) > 1:
        targets = ", ".join(sorted(entry_point.value for entry_point in candidates))
        raise ConflictingConnectors(
            f"more than one installed distribution registers a connector named {name!r}: {targets}"
        )
    factory = candidates[0].load()
    connector = factory(**arguments)
    if not callable(getattr(connector, "records", None)) or not callable(
        getattr(connector, "estimate_total", None)
    ):
        raise TypeError(
            f"the entry point {candidates[0].value} registered as connector {name!r}"
            " does not make a connector (records and estimate_total)"
        )
    connector_: Connector = connector
    return connector_

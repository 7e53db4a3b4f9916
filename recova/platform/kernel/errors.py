"""Aborting a request with the API's one error shape."""

from __future__ import annotations

from typing import Any, NoReturn

from flask_smorest import abort as _smorest_abort


def abort(code: int, **kwargs: Any) -> NoReturn:
    """Stop the request with ``code``; ``message``, ``errors`` and ``headers`` go in the body.

    flask-smorest's ``abort`` always raises but is not annotated so; this one says so, so
    type checkers know the code after it is unreachable.
    """
    _smorest_abort(code, **kwargs)
    raise AssertionError("flask-smorest abort returned")  # pragma: no cover

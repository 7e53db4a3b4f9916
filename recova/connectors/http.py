"""The HTTP connector: pulls a tenant's paginated JSON endpoint.

Options (``Source.options``, set by the tenant):

``url``
    The endpoint, ``http`` or ``https``. Query parameters in it are kept and sent on
    every request; ``params`` (a mapping) adds more.
``records_path``
    Dotted path to the list of records in each response (``"data"``,
    ``"result.items"``); empty or absent means the response itself is the list.
``pagination``
    ``"page"`` (default) or ``"cursor"``.

    ``"page"`` sends ``page_param`` (default ``"page"``), counting from ``first_page``
    (default 1). It stops at the first empty page, or earlier when the response says
    it is the last: ``last_page_path`` (the last page's number, e.g.
    ``"meta.last_page"``), ``total_pages_path`` (how many pages there are),
    ``total_path`` (how many records there are) or ``has_more_path`` (a boolean that is
    false on the last page). A short page does not stop it, because many servers cap
    the page size below what was asked for and every page would then look short.

    ``"cursor"`` sends no cursor on the first request, then sends the value found at
    ``cursor_path`` (default ``"next_cursor"``) as ``cursor_param`` (default
    ``"cursor"``); it stops when the value is absent, null or empty.

    Both send ``page_size`` (default 100) as ``page_size_param`` (default
    ``"per_page"``; empty to send none). Both refuse to loop forever: a page that
    repeats the previous one, a cursor seen before, or more than ``max_pages`` pages
    (default 100,000) is an error.
``auth_header``, ``auth_value``
    One header sent with every request, e.g. ``Authorization`` and ``Bearer …``. The
    value never appears in an error or a log line.
``timeout``
    Seconds per request (default 30).
``max_retries``, ``backoff_seconds``, ``max_backoff_seconds``
    Connection errors, timeouts, 5xx and 429 answers are retried up to ``max_retries``
    times (default 5), waiting ``backoff_seconds * 2**n`` (default base 1.0), at most
    ``max_backoff_seconds`` (default 60); a ``Retry-After`` on 429 or 503 replaces the
    computed wait (within the same cap).

Each record's checkpoint is ``{"page": token, "index": i, "number": n}``: the page
number or cursor its page was fetched with, its 0-based index on that page, and its
number. Resuming from it fetches that page again and continues after that index.

``allow_private_hosts``
    Whether the host may resolve to a loopback, private, link-local, multicast or
    reserved address (default false). This is the platform's decision, never the
    tenant's: the pipeline sets it from a setting over whatever the stored options say
    (and refuses it in options a tenant submits). The constructor argument of the same
    name does the same for a connector built in code; either one allows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import tenacity

from recova.connectors.base import Record, Resume, Source, SourceError
from recova.platform.kernel.outbound import (
    DestinationRefused,
    Resolver,
    pin_destination,
    resolve_host,
    retry_after_seconds,
)

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MISSING = object()


def _at_path(document: Any, path: str | None) -> Any:
    """The value at a dotted path, or ``_MISSING``."""
    if not path:
        return document
    value = document
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _indicator(document: Any, path: str) -> Any:
    """A stop indicator's value, or ``_MISSING`` when the source names none."""
    return _at_path(document, path) if path else _MISSING


class _RetryableAnswer(Exception):
    """A 5xx or 429 answer, retried like a lost connection."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


def _option(options: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = options.get(key, default)
    if value is None:
        return default
    # bool is an int; "max_retries": true is a mistake, not 1.
    if isinstance(value, bool) and kind is not bool:
        raise SourceError(f"the {key} option has the wrong type")
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind):
        raise SourceError(f"the {key} option has the wrong type")
    return value


@dataclass(frozen=True, slots=True)
class _Settings:
    """The options of one HTTP source, checked."""

    url: httpx.URL
    params: dict[str, str]
    records_path: str
    pagination: str
    page_param: str
    first_page: int
    last_page_path: str
    total_pages_path: str
    total_path: str
    has_more_path: str
    cursor_path: str
    cursor_param: str
    page_size: int
    page_size_param: str
    headers: dict[str, str]
    timeout: float
    max_retries: int
    backoff_seconds: float
    max_backoff_seconds: float
    max_pages: int
    allow_private_hosts: bool

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> _Settings:
        """Check the tenant's options; every mistake is a ``SourceError``."""
        raw_url = _option(options, "url", str, "")
        if not raw_url:
            raise SourceError("the url option is required")
        try:
            url = httpx.URL(raw_url)
        except httpx.InvalidURL:
            raise SourceError("the url option is not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise SourceError("the url must start with http:// or https:// and name a host")
        pagination = _option(options, "pagination", str, "page")
        if pagination not in ("page", "cursor"):
            raise SourceError('the pagination option must be "page" or "cursor"')
        params = _option(options, "params", dict, {})
        headers = {"Accept": "application/json", "User-Agent": "Recova-connector/1"}
        auth_header = _option(options, "auth_header", str, "")
        if auth_header:
            auth_value = _option(options, "auth_value", str, "")
            if not _TOKEN.fullmatch(auth_header):
                raise SourceError("the auth_header option is not a valid header name")
            # Checked here because the HTTP library's own error would quote the value.
            if _CONTROL.search(auth_value) or not auth_value.isascii():
                raise SourceError("the auth_value option holds characters a header cannot")
            headers[auth_header] = auth_value
        settings = cls(
            url=url,
            params={str(key): str(value) for key, value in params.items()},
            records_path=_option(options, "records_path", str, ""),
            pagination=pagination,
            page_param=_option(options, "page_param", str, "page"),
            first_page=_option(options, "first_page", int, 1),
            last_page_path=_option(options, "last_page_path", str, ""),
            total_pages_path=_option(options, "total_pages_path", str, ""),
            total_path=_option(options, "total_path", str, ""),
            has_more_path=_option(options, "has_more_path", str, ""),
            cursor_path=_option(options, "cursor_path", str, "next_cursor"),
            cursor_param=_option(options, "cursor_param", str, "cursor"),
            page_size=_option(options, "page_size", int, 100),
            page_size_param=_option(options, "page_size_param", str, "per_page"),
            headers=headers,
            timeout=_option(options, "timeout", float, 30.0),
            max_retries=_option(options, "max_retries", int, 5),
            backoff_seconds=_option(options, "backoff_seconds", float, 1.0),
            max_backoff_seconds=_option(options, "max_backoff_seconds", float, 60.0),
            max_pages=_option(options, "max_pages", int, 100_000),
            allow_private_hosts=_option(options, "allow_private_hosts", bool, False),
        )
        if settings.page_size < 1 or settings.max_pages < 1 or settings.max_retries < 0:
            raise SourceError("page_size and max_pages must be positive, max_retries not negative")
        if settings.timeout <= 0 or settings.backoff_seconds < 0:
            raise SourceError("timeout must be positive and backoff_seconds not negative")
        return settings


@dataclass(slots=True)
class _Page:
    """One fetched page: its token, its records and what it says about the next."""

    token: Any
    label: str
    records: list[dict[str, Any]]
    body: Any


class HttpConnector:
    """Pulls records from a paginated JSON endpoint."""

    name: ClassVar[str] = "http"
    kind: ClassVar[str] = "pull"

    def __init__(
        self,
        *,
        allow_private_hosts: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        resolve: Resolver = resolve_host,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._allow_private_hosts = allow_private_hosts
        self._sleep = sleep
        self._resolve = resolve
        self._transport = transport

    def records(self, source: Source, *, resume: Resume | None = None) -> Iterator[Record]:
        """Yield the endpoint's records page by page, after ``resume`` if given."""
        settings = _Settings.from_options(source.options)
        allow_private = self._allow_private_hosts or settings.allow_private_hosts
        url, host_header, extensions = self._pinned(settings.url, allow_private=allow_private)

        token, skip_index, before, skip_through = _starting_point(settings, resume)
        headers = dict(settings.headers)
        if host_header:
            headers["Host"] = host_header
        with httpx.Client(
            timeout=settings.timeout,
            headers=headers,
            follow_redirects=False,
            # Environment proxies would resolve the host themselves and defeat the
            # address check.
            trust_env=False,
            transport=self._transport,
        ) as client:
            previous: list[dict[str, Any]] | None = None
            seen_cursors = {str(token)} if token is not None else set()
            for ordinal in range(1, settings.max_pages + 1):
                page = self._fetch_page(
                    client,
                    settings=settings,
                    url=url,
                    extensions=extensions,
                    token=token,
                    ordinal=ordinal,
                )
                if settings.pagination == "page" and page.records and page.records == previous:
                    raise SourceError(
                        f"{page.label} repeats the page before it; does the endpoint take"
                        f" the {settings.page_param!r} parameter?"
                    )
                for index, values in enumerate(page.records):
                    number = before + index + 1
                    if index <= skip_index or number <= skip_through:
                        continue
                    checkpoint = {"page": page.token, "index": index, "number": number}
                    yield Record(number, values, None, checkpoint)
                before += len(page.records)
                skip_index = -1
                previous = page.records

                if settings.pagination == "page":
                    if _last_page(settings, page, before):
                        return
                    token = page.token + 1
                else:
                    token = _next_cursor(settings, page, seen_cursors)
                    if token is None:
                        return
            raise SourceError(
                f"stopped after {settings.max_pages} pages; is the pagination set up right?"
            )

    def estimate_total(self, source: Source) -> int | None:
        """Unknown without fetching, so ``None``."""
        return None

    def _pinned(
        self, url: httpx.URL, *, allow_private: bool
    ) -> tuple[httpx.URL, str | None, dict[str, Any]]:
        """The URL to connect to, the Host header and TLS name that keep the original.

        The host is resolved once and its addresses checked; connecting to the checked
        address (instead of letting the client resolve again) stops a DNS answer that
        changes between check and use from reaching an internal address.
        """
        try:
            pinned = pin_destination(url, allow_private=allow_private, resolve=self._resolve)
        except DestinationRefused as refused:
            if refused.reason == "unresolved":
                raise SourceError("the endpoint's host name could not be resolved") from None
            raise SourceError(
                "the endpoint's host is on a private or reserved network, which sources"
                " may not reach"
            ) from None
        return pinned.url, pinned.host_header, pinned.extensions

    def _fetch_page(
        self,
        client: httpx.Client,
        *,
        settings: _Settings,
        url: httpx.URL,
        extensions: dict[str, Any],
        token: Any,
        ordinal: int,
    ) -> _Page:
        params = dict(settings.params)
        if settings.page_size_param:
            params[settings.page_size_param] = str(settings.page_size)
        if settings.pagination == "page":
            params[settings.page_param] = str(token)
            label = f"page {token}"
        else:
            if token is not None:
                params[settings.cursor_param] = str(token)
            label = f"page {ordinal}" if token is not None or ordinal > 1 else "the first page"

        # httpx replaces the URL's own query with ``params``; the tenant's query (an API
        # version, a region) must stay, with the paging parameters taking precedence.
        query = url.params.merge(params)
        response = self._get_with_retries(
            client, settings=settings, url=url, params=query, extensions=extensions, label=label
        )
        try:
            body = response.json()
        except ValueError:
            raise SourceError(f"{label} is not JSON") from None
        records = _at_path(body, settings.records_path)
        where = repr(settings.records_path) if settings.records_path else "its top level"
        if not isinstance(records, list):
            raise SourceError(f"{label} has no list of records at {where}")
        for index, value in enumerate(records):
            if not isinstance(value, dict):
                raise SourceError(f"record {index + 1} of {label} is not a JSON object")
        return _Page(token=token, label=label, records=records, body=body)

    def _get_with_retries(
        self,
        client: httpx.Client,
        *,
        settings: _Settings,
        url: httpx.URL,
        params: httpx.QueryParams,
        extensions: dict[str, Any],
        label: str,
    ) -> httpx.Response:
        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, _RetryableAnswer) and error.retry_after is not None:
                return min(error.retry_after, settings.max_backoff_seconds)
            delay = settings.backoff_seconds * 2 ** (state.attempt_number - 1)
            return float(min(delay, settings.max_backoff_seconds))

        def get_once() -> httpx.Response:
            response = client.get(url, params=params, extensions=extensions)
            status = response.status_code
            if status >= 500 or status == 429:
                retry_after = retry_after_seconds(response) if status in (429, 503) else None
                raise _RetryableAnswer(status, retry_after)
            if 300 <= status < 400:
                raise SourceError(
                    f"the endpoint answered {status} (a redirect) for {label};"
                    " set the url to the address it redirects to"
                )
            if status >= 400:
                hint = " (check the credentials)" if status in (401, 403) else ""
                raise SourceError(f"the endpoint answered {status} for {label}{hint}")
            return response

        attempts = settings.max_retries + 1
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=wait,
            retry=tenacity.retry_if_exception_type((httpx.TransportError, _RetryableAnswer)),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(get_once)
        except _RetryableAnswer as error:
            raise SourceError(
                f"the endpoint answered {error.status} for {label}, {attempts} times"
            ) from None
        except httpx.TimeoutException:
            raise SourceError(
                f"the endpoint did not answer {label} in time, {attempts} times"
            ) from None
        except httpx.TransportError as error:
            # The class name only: the library's message may quote the request.
            raise SourceError(
                f"the endpoint could not be reached for {label} ({type(error).__name__}),"
                f" {attempts} times"
            ) from None


def _starting_point(settings: _Settings, resume: Resume | None) -> tuple[Any, int, int, int]:
    """Where a read starts: page token, index to skip through on it, records before
    it, and the record number to skip through (for a resume by number)."""
    first_token: Any = settings.first_page if settings.pagination == "page" else None
    if resume and "page" in resume:
        if "index" not in resume or "number" not in resume:
            raise ValueError("an HTTP checkpoint holds page, index and number")
        index = int(resume["index"])
        return resume["page"], index, int(resume["number"]) - index - 1, 0
    if resume and "number" in resume:
        return first_token, -1, 0, int(resume["number"])
    return first_token, -1, 0, 0


def _last_page(settings: _Settings, page: _Page, records_so_far: int) -> bool:
    """Whether page pagination should stop after this page."""
    if not page.records:
        return True
    last_page = _indicator(page.body, settings.last_page_path)
    if isinstance(last_page, int) and page.token >= last_page:
        return True
    pages = _indicator(page.body, settings.total_pages_path)
    if isinstance(pages, int) and page.token - settings.first_page + 1 >= pages:
        return True
    total = _indicator(page.body, settings.total_path)
    if isinstance(total, int) and records_so_far >= total:
        return True
    return _indicator(page.body, settings.has_more_path) is False


def _next_cursor(settings: _Settings, page: _Page, seen: set[str]) -> str | int | None:
    """The cursor for the page after this one, or ``None`` after the last."""
    cursor = _at_path(page.body, settings.cursor_path)
    if cursor is _MISSING or cursor is None or cursor == "":
        return None
    if not isinstance(cursor, str | int) or isinstance(cursor, bool):
        raise SourceError(f"{page.label} has a cursor that is not text")
    if str(cursor) in seen:
        raise SourceError(f"{page.label} sends back a cursor already used")
    seen.add(str(cursor))
    return cursor

"""The HTTP connector against a real HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from recova.connectors.base import Record, Source, SourceError
from recova.connectors.http import HttpConnector

SECRET = "Bearer s3cr3t-token-value"
PEOPLE = [{"id": i, "name": f"Debtor {i}"} for i in range(1, 8)]

Handler = Callable[[Request], Response]


@dataclass
class Endpoint:
    """A local JSON endpoint whose answers each test scripts."""

    url: str
    handler: Handler
    requests: list[Request] = field(default_factory=list)

    @property
    def pages_asked(self) -> list[str | None]:
        return [request.args.get("page") for request in self.requests]


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    holder: list[Endpoint] = []

    @Request.application  # type: ignore[arg-type]
    def application(request: Request) -> Response:
        served = holder[0]
        served.requests.append(request)
        return served.handler(request)

    server = make_server("127.0.0.1", 0, application, threaded=True)
    # A short poll interval makes shutdown quick.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    holder.append(Endpoint(url=f"http://127.0.0.1:{server.port}/debts", handler=paged()))
    try:
        yield holder[0]
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    text = body if isinstance(body, str) else json.dumps(body)
    return Response(text, status=status, headers=headers, content_type="application/json")


def paged(people: list[dict[str, Any]] = PEOPLE, **extra: Any) -> Handler:
    """Page pagination over ``people``, ``per_page`` at a time, as ``{"data": [...]}``."""

    def handle(request: Request) -> Response:
        page = int(request.args.get("page", "1"))
        size = int(request.args.get("per_page", "3"))
        chunk = people[(page - 1) * size : page * size]
        return answer({"data": chunk, **{k: v(page) for k, v in extra.items()}})

    return handle


def cursor_paged(people: list[dict[str, Any]] = PEOPLE) -> Handler:
    """Cursor pagination: the cursor ("c<id>") names the id to start after, in meta.next."""

    def handle(request: Request) -> Response:
        after = int(request.args.get("after", "c0").removeprefix("c"))
        size = int(request.args.get("limit", "3"))
        chunk = [p for p in people if p["id"] > after][:size]
        has_next = bool(chunk) and chunk[-1]["id"] < people[-1]["id"]
        return answer(
            {"items": chunk, "meta": {"next": f"c{chunk[-1]['id']}" if has_next else None}}
        )

    return handle


def options(endpoint: Endpoint, **extra: Any) -> dict[str, Any]:
    return {
        "url": endpoint.url,
        "records_path": "data",
        "page_size": 3,
        "backoff_seconds": 0.001,
        **extra,
    }


def connector(sleeps: list[float] | None = None, **arguments: Any) -> HttpConnector:
    arguments.setdefault("allow_private_hosts", True)
    sleep = sleeps.append if sleeps is not None else (lambda _seconds: None)
    return HttpConnector(sleep=sleep, **arguments)


def read(endpoint: Endpoint, resume: dict[str, Any] | None = None, **extra: Any) -> list[Record]:
    source = Source(options=options(endpoint, **extra))
    return list(connector().records(source, resume=resume))


def read_until_error(endpoint: Endpoint, **extra: Any) -> tuple[list[Record], SourceError]:
    got: list[Record] = []
    with pytest.raises(SourceError) as caught:
        got.extend(connector().records(Source(options=options(endpoint, **extra))))
    return got, caught.value


def test_page_pagination_reads_every_page_until_an_empty_one(endpoint: Endpoint) -> None:
    records = read(endpoint)

    assert [r.values for r in records] == PEOPLE
    assert [r.number for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert [r.checkpoint for r in records[2:4]] == [
        {"page": 1, "index": 2, "number": 3},
        {"page": 2, "index": 0, "number": 4},
    ]
    assert all(r.problem is None for r in records)
    assert endpoint.pages_asked == ["1", "2", "3", "4"]
    assert {r.args["per_page"] for r in endpoint.requests} == {"3"}


def test_page_pagination_stops_on_the_last_page_indicator(endpoint: Endpoint) -> None:
    endpoint.handler = paged(meta=lambda _page: {"last_page": 3})

    records = read(endpoint, last_page_path="meta.last_page")

    assert len(records) == 7
    assert endpoint.pages_asked == ["1", "2", "3"]


def test_page_pagination_stops_on_the_total(endpoint: Endpoint) -> None:
    endpoint.handler = paged(total=lambda _page: 7)

    assert len(read(endpoint, total_path="total")) == 7
    assert endpoint.pages_asked == ["1", "2", "3"]


def test_page_pagination_stops_when_has_more_is_false(endpoint: Endpoint) -> None:
    endpoint.handler = paged(has_more=lambda page: page < 3)

    assert len(read(endpoint, has_more_path="has_more")) == 7
    assert endpoint.pages_asked == ["1", "2", "3"]


def test_zero_based_pages_with_a_page_count(endpoint: Endpoint) -> None:
    def zero_based(request: Request) -> Response:
        page = int(request.args["p"])
        return answer({"data": PEOPLE[page * 3 : page * 3 + 3], "pages": 3})

    endpoint.handler = zero_based

    records = read(endpoint, page_param="p", first_page=0, total_pages_path="pages")

    assert [r.values for r in records] == PEOPLE
    assert [r.args["p"] for r in endpoint.requests] == ["0", "1", "2"]
    assert records[0].checkpoint == {"page": 0, "index": 0, "number": 1}


def test_a_short_page_does_not_stop_the_read(endpoint: Endpoint) -> None:
    # The server caps pages at 2 whatever is asked: every page is "short".
    def capped(request: Request) -> Response:
        page = int(request.args["page"])
        return answer({"data": PEOPLE[(page - 1) * 2 : page * 2]})

    endpoint.handler = capped

    assert len(read(endpoint, page_size=50)) == 7


def test_endpoint_that_ignores_the_page_parameter_is_refused(endpoint: Endpoint) -> None:
    endpoint.handler = lambda _request: answer({"data": PEOPLE[:3]})

    got, error = read_until_error(endpoint)

    assert len(got) == 3
    assert str(error) == (
        "page 2 repeats the page before it; does the endpoint take the 'page' parameter?"
    )


def test_max_pages_stops_a_runaway_read(endpoint: Endpoint) -> None:
    endpoint.handler = lambda request: answer({"data": [{"page": request.args["page"]}]})

    got, error = read_until_error(endpoint, max_pages=4)

    assert len(got) == 4
    assert "stopped after 4 pages" in str(error)


def test_cursor_pagination_follows_the_cursor_until_it_is_null(endpoint: Endpoint) -> None:
    endpoint.handler = cursor_paged()

    records = read(
        endpoint,
        pagination="cursor",
        records_path="items",
        cursor_path="meta.next",
        cursor_param="after",
        page_size_param="limit",
    )

    assert [r.values for r in records] == PEOPLE
    assert [r.args.get("after") for r in endpoint.requests] == [None, "c3", "c6"]
    assert [r.checkpoint for r in records[2:4]] == [
        {"page": None, "index": 2, "number": 3},
        {"page": "c3", "index": 0, "number": 4},
    ]


def test_cursor_sent_back_twice_is_refused(endpoint: Endpoint) -> None:
    endpoint.handler = lambda _request: answer({"data": [{"a": 1}], "next_cursor": "same"})

    got, error = read_until_error(endpoint, pagination="cursor")

    assert len(got) == 2
    assert str(error) == "page 2 sends back a cursor already used"


def test_records_at_the_top_level(endpoint: Endpoint) -> None:
    endpoint.handler = lambda request: answer(PEOPLE if request.args["page"] == "1" else [])

    records = read(endpoint, records_path="")

    assert [r.values for r in records] == PEOPLE


def test_server_error_is_retried_with_back_off(endpoint: Endpoint) -> None:
    served = paged()
    failures = {"2": 2}

    def flaky(request: Request) -> Response:
        page = request.args["page"]
        if failures.get(page):
            failures[page] -= 1
            return answer({"error": "busy"}, status=500)
        return served(request)

    endpoint.handler = flaky
    sleeps: list[float] = []

    records = list(
        connector(sleeps).records(Source(options=options(endpoint, backoff_seconds=0.5)))
    )

    assert [r.values for r in records] == PEOPLE
    assert endpoint.pages_asked == ["1", "2", "2", "2", "3", "4"]
    assert sleeps == [0.5, 1.0]


def test_too_many_requests_honours_retry_after(endpoint: Endpoint) -> None:
    served = paged()
    limited = {"done": False}

    def rate_limited(request: Request) -> Response:
        if not limited["done"]:
            limited["done"] = True
            return answer({}, status=429, headers={"Retry-After": "7"})
        return served(request)

    endpoint.handler = rate_limited
    sleeps: list[float] = []

    records = list(connector(sleeps).records(Source(options=options(endpoint))))

    assert len(records) == 7
    assert sleeps == [7.0]


def test_retry_after_is_capped(endpoint: Endpoint) -> None:
    calls = {"n": 0}
    served = paged()

    def rate_limited(request: Request) -> Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return answer({}, status=429, headers={"Retry-After": "86400"})
        return served(request)

    endpoint.handler = rate_limited
    sleeps: list[float] = []

    list(connector(sleeps).records(Source(options=options(endpoint, max_backoff_seconds=30))))

    assert sleeps == [30.0]


def test_endpoint_that_keeps_failing_is_a_source_error_after_earlier_pages(
    endpoint: Endpoint,
) -> None:
    served = paged()

    def broken_after_one(request: Request) -> Response:
        if request.args["page"] == "1":
            return served(request)
        return answer({}, status=503)

    endpoint.handler = broken_after_one
    sleeps: list[float] = []
    got: list[Record] = []

    with pytest.raises(SourceError) as caught:
        got.extend(connector(sleeps).records(Source(options=options(endpoint, max_retries=2))))

    assert [r.number for r in got] == [1, 2, 3]
    assert str(caught.value) == "the endpoint answered 503 for page 2, 3 times"
    assert len(sleeps) == 2


def test_timeout_is_retried(endpoint: Endpoint) -> None:
    served = paged()
    slow = {"first": True}

    def slow_once(request: Request) -> Response:
        if slow["first"]:
            slow["first"] = False
            time.sleep(0.5)
        return served(request)

    endpoint.handler = slow_once

    records = read(endpoint, timeout=0.1)

    assert len(records) == 7
    assert endpoint.pages_asked[:2] == ["1", "1"]


def test_unreachable_endpoint_is_a_source_error_after_retries() -> None:
    # A port nothing listens on: bind one, note it, close it.
    server = make_server("127.0.0.1", 0, lambda _environ, _start: [])
    url = f"http://127.0.0.1:{server.port}/debts"
    server.server_close()
    sleeps: list[float] = []

    with pytest.raises(SourceError) as caught:
        list(connector(sleeps).records(Source(options={"url": url, "max_retries": 2})))

    assert str(caught.value) == (
        "the endpoint could not be reached for page 1 (ConnectError), 3 times"
    )
    assert sleeps == [1.0, 2.0]


@pytest.mark.parametrize(
    ("bad_page", "problem"),
    [
        ("<html>oops</html>", "page 2 is not JSON"),
        ({"error": "no data key"}, "page 2 has no list of records at 'data'"),
        ({"data": {"id": 4}}, "page 2 has no list of records at 'data'"),
        ({"data": [{"id": 4}, "five"]}, "record 2 of page 2 is not a JSON object"),
    ],
)
def test_malformed_page_is_refused_after_earlier_pages_are_yielded(
    endpoint: Endpoint, bad_page: Any, problem: str
) -> None:
    served = paged()
    endpoint.handler = lambda r: answer(bad_page) if r.args["page"] == "2" else served(r)

    got, error = read_until_error(endpoint)

    assert [r.number for r in got] == [1, 2, 3]
    assert str(error) == problem


def test_resume_from_the_last_good_checkpoint_reads_the_rest_exactly_once(
    endpoint: Endpoint,
) -> None:
    served = paged()
    endpoint.handler = lambda r: answer("not json") if r.args["page"] == "3" else served(r)
    first_run, _error = read_until_error(endpoint)
    assert first_run[-1].checkpoint == {"page": 2, "index": 2, "number": 6}

    endpoint.handler = served
    endpoint.requests.clear()
    second_run = read(endpoint, resume=first_run[-1].checkpoint)

    assert [r.number for r in second_run] == [7]
    assert [r.values for r in first_run + second_run] == PEOPLE
    # The checkpoint's page is fetched again, then the read goes on.
    assert endpoint.pages_asked == ["2", "3", "4"]


def test_resume_from_the_middle_of_a_page(endpoint: Endpoint) -> None:
    records = read(endpoint, resume={"page": 2, "index": 0, "number": 4})

    assert [(r.number, r.values["id"]) for r in records] == [(5, 5), (6, 6), (7, 7)]


def test_resume_from_a_cursor_checkpoint(endpoint: Endpoint) -> None:
    endpoint.handler = cursor_paged()
    cursor_options: dict[str, Any] = {
        "pagination": "cursor",
        "records_path": "items",
        "cursor_path": "meta.next",
        "cursor_param": "after",
        "page_size_param": "limit",
    }
    everything = read(endpoint, **cursor_options)
    checkpoint = everything[4].checkpoint
    assert checkpoint == {"page": "c3", "index": 1, "number": 5}

    rest = read(endpoint, resume=checkpoint, **cursor_options)

    assert [r.values for r in rest] == PEOPLE[5:]
    assert [r.number for r in rest] == [6, 7]


def test_resume_by_number_reads_from_the_start_and_skips(endpoint: Endpoint) -> None:
    records = read(endpoint, resume={"number": 4})

    assert [r.number for r in records] == [5, 6, 7]
    assert [r.values for r in records] == PEOPLE[4:]
    assert endpoint.pages_asked == ["1", "2", "3", "4"]


def test_incomplete_checkpoint_is_a_programming_error(endpoint: Endpoint) -> None:
    with pytest.raises(ValueError, match="page, index and number"):
        read(endpoint, resume={"page": 2})


def test_auth_header_is_sent(endpoint: Endpoint) -> None:
    read(endpoint, auth_header="Authorization", auth_value=SECRET)

    assert {r.headers.get("Authorization") for r in endpoint.requests} == {SECRET}
    assert endpoint.requests[0].headers["Accept"] == "application/json"


def test_unauthorised_answer_is_a_source_error_without_the_secret(endpoint: Endpoint) -> None:
    endpoint.handler = lambda _request: answer({"error": "bad token"}, status=401)

    got, error = read_until_error(endpoint, auth_header="X-Api-Key", auth_value=SECRET)

    assert got == []
    assert str(error) == "the endpoint answered 401 for page 1 (check the credentials)"
    assert "s3cr3t" not in repr(error)
    assert error.__cause__ is None
    # A 4xx is the tenant's to fix: no retries.
    assert len(endpoint.requests) == 1


def test_not_found_is_a_source_error(endpoint: Endpoint) -> None:
    endpoint.handler = lambda _request: answer({}, status=404)

    _got, error = read_until_error(endpoint)

    assert str(error) == "the endpoint answered 404 for page 1"


def test_redirect_is_not_followed(endpoint: Endpoint) -> None:
    endpoint.handler = lambda _request: Response(
        "", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )

    _got, error = read_until_error(endpoint)

    assert str(error).startswith("the endpoint answered 302 (a redirect) for page 1")
    assert len(endpoint.requests) == 1


def test_auth_value_with_a_line_break_is_refused_without_quoting_it(endpoint: Endpoint) -> None:
    _got, error = read_until_error(
        endpoint, auth_header="Authorization", auth_value=SECRET + "\r\nX-Evil: 1"
    )

    assert str(error) == "the auth_value option holds characters a header cannot"
    assert endpoint.requests == []


def test_loopback_address_is_refused_unless_private_hosts_are_allowed(
    endpoint: Endpoint,
) -> None:
    source = Source(options=options(endpoint))

    with pytest.raises(SourceError) as caught:
        list(HttpConnector().records(source))

    assert str(caught.value) == (
        "the endpoint's host is on a private or reserved network, which sources may not reach"
    )
    assert endpoint.requests == []
    # The platform's option (set from a setting, never by the tenant) allows it.
    allowed = Source(options={**options(endpoint), "allow_private_hosts": True})
    assert len(list(HttpConnector().records(allowed))) == 7


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:1/debts",
        "http://10.0.0.8/debts",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
    ],
)
def test_private_and_reserved_addresses_are_refused(url: str) -> None:
    with pytest.raises(SourceError, match="private or reserved network"):
        list(HttpConnector().records(Source(options={"url": url})))


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://example.com/", "/relative"]
)
def test_urls_that_are_not_http_are_refused(url: str) -> None:
    with pytest.raises(SourceError, match="must start with http:// or https://"):
        list(HttpConnector().records(Source(options={"url": url})))


def test_host_resolving_to_any_private_address_is_refused() -> None:
    def resolve(_host: str, _port: int) -> list[str]:
        return ["93.184.216.34", "192.168.1.10"]

    with pytest.raises(SourceError, match="private or reserved network"):
        list(HttpConnector(resolve=resolve).records(Source(options={"url": "https://a.test/"})))


def test_unresolvable_host_is_refused() -> None:
    def resolve(_host: str, _port: int) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(SourceError, match="could not be resolved"):
        list(HttpConnector(resolve=resolve).records(Source(options={"url": "https://a.test/"})))


def test_requests_go_to_the_checked_address_under_the_original_name() -> None:
    # A second DNS answer cannot redirect the request: it is sent to the address
    # that was checked, with the Host header (and TLS name) of the configured URL.
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": []})

    connector = HttpConnector(
        resolve=lambda _host, _port: ["93.184.216.34"],
        transport=httpx.MockTransport(handler),
    )
    source = Source(
        options={"url": "https://api.lender.test:8443/v1/debts?region=cn", "records_path": "data"}
    )

    assert list(connector.records(source)) == []

    request = seen[0]
    assert request.url.host == "93.184.216.34"
    assert request.url.port == 8443
    assert request.url.params["region"] == "cn"
    assert request.url.params["page"] == "1"
    assert request.headers["Host"] == "api.lender.test:8443"
    assert request.extensions["sni_hostname"] == "api.lender.test"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({}, "the url option is required"),
        ({"url": "https://a.test/", "pagination": "offset"}, "pagination option"),
        ({"url": "https://a.test/", "page_size": 0}, "must be positive"),
        ({"url": "https://a.test/", "max_retries": True}, "max_retries option"),
        ({"url": "https://a.test/", "auth_header": "Bad Header"}, "not a valid header name"),
    ],
)
def test_invalid_options_are_refused(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceError, match=message):
        list(HttpConnector(allow_private_hosts=True).records(Source(options=bad)))


def test_idn_host_is_resolved_and_named_in_its_ascii_form() -> None:
    seen: list[httpx.Request] = []
    resolved: list[str] = []

    def resolve(host: str, _port: int) -> list[str]:
        resolved.append(host)
        return ["2606:2800:220:1:248:1893:25c8:1946"]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    connector = HttpConnector(resolve=resolve, transport=httpx.MockTransport(handler))

    list(connector.records(Source(options={"url": "https://贷款.test/debts"})))

    assert resolved == ["xn--0kwr83e.test"]
    assert seen[0].url.host == "2606:2800:220:1:248:1893:25c8:1946"
    assert seen[0].headers["Host"] == "xn--0kwr83e.test"
    assert seen[0].extensions["sni_hostname"] == "xn--0kwr83e.test"


@pytest.mark.parametrize(
    ("header", "expected"), [("12", [12.0]), ("²", [0.001]), ("soon", [0.001])]
)
def test_retry_after_that_is_not_seconds_falls_back_to_back_off(
    endpoint: Endpoint, header: str, expected: list[float]
) -> None:
    served = paged()
    calls = {"n": 0}

    def limited_once(request: Request) -> Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return answer({}, status=429, headers={"Retry-After": header})
        return served(request)

    endpoint.handler = limited_once
    sleeps: list[float] = []

    list(connector(sleeps).records(Source(options=options(endpoint))))

    assert sleeps == expected


def test_estimate_total_is_unknown() -> None:
    assert HttpConnector().estimate_total(Source(options={"url": "https://a.test/"})) is None

"""``rentlake estimate`` and ``rentlake serve``: the same handler, from a terminal and over HTTP."""

from __future__ import annotations

import argparse
import io
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support import ROOT


@pytest.fixture
def lake(lake: Any) -> Any:
    """The conftest lake (fake credentials -> mock_aws() -> bucket) with a champion: rent = 118 s^0.68."""
    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    publish_champion(lake, "v1", make_onnx_model(), make_card("v1"))
    return lake


@pytest.fixture
def ctx(lake: Any) -> SimpleNamespace:
    return SimpleNamespace(lake=lake, functions_dir=ROOT / "functions", out=io.StringIO())


def _args(**kw: Any) -> argparse.Namespace:
    base = {"surface": "30", "district": None, "current_rent": None, "json": False}
    return argparse.Namespace(**{**base, **kw})


def test_register_adds_documented_subcommands() -> None:
    from rentlake.cli import cmd_estimate, cmd_serve

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cmd_estimate.register(sub)
    cmd_serve.register(sub)
    args = parser.parse_args(["estimate", "--surface", "30", "--current-rent", "1500", "--json"])
    assert (args.surface, args.current_rent, args.json, args.run) == ("30", "1500", True, cmd_estimate.run)
    args = parser.parse_args(["serve", "--port", "0"])
    assert (args.port, args.host, args.run) == (0, "127.0.0.1", cmd_serve.run)


def test_estimate_prints_a_sentence(ctx: SimpleNamespace) -> None:
    # GIVEN the champion WHEN estimating 30 m2 paid 1 500
    from rentlake.cli.cmd_estimate import run

    assert run(_args(current_rent="1500"), ctx) == 0
    # THEN a short sentence with the estimate, the interval, the verdict
    text = ctx.out.getvalue()
    assert text.startswith("30 m²: about 1 192 €/month, 90 % interval 799–1 778 € (model v1).")
    assert (
        "At 1 500 €/month you pay within the market interval (higher than 83 % of comparable rents)." in text
    )


def test_estimate_json_is_exactly_the_api_body(ctx: SimpleNamespace) -> None:
    # GIVEN the same listing sent through the handler directly
    from rentlake.cli.cmd_estimate import predict_handler, run
    from rentlake.runtime.events import http_api_event

    direct = predict_handler(ctx)(
        http_api_event(
            "POST", "/estimates", '{"surface_m2": 30.0}', headers={"content-type": "application/json"}
        ),
        None,
    )
    # WHEN estimated with --json THEN the output is that body
    assert run(_args(json=True), ctx) == 0
    assert ctx.out.getvalue().strip() == direct["body"]
    assert json.loads(ctx.out.getvalue())["rent_eur"] == 1192


@pytest.mark.parametrize(
    ("surface", "rent", "expected"),
    [
        ("-5", None, "surface_m2: must be between 9 and 1000 m²"),
        ("4", None, "surface_m2: must be between 9 and 1000 m²"),
        ("abc", None, "surface_m2: must be a number"),
        ("nan", None, "surface_m2: must be a finite number"),
        ("30", "-1", "current_rent_eur: must not be negative"),
    ],
)
def test_estimate_bad_input_is_a_cli_error_with_the_api_message(
    ctx: SimpleNamespace, surface: str, rent: str | None, expected: str
) -> None:
    from rentlake.cli.cmd_estimate import run
    from rentlake.cli.errors import CliError

    with pytest.raises(CliError) as info:
        run(_args(surface=surface, current_rent=rent), ctx)
    assert expected in str(info.value)
    assert "Traceback" not in str(info.value)


def test_estimate_without_champion_says_so(ctx: SimpleNamespace, lake: Any) -> None:
    from rentlake.cli.cmd_estimate import run
    from rentlake.cli.errors import CliError
    from rentlake.lake import keys

    lake.delete_keys([keys.champion()])
    with pytest.raises(CliError, match="no model has been promoted yet; run the training pipeline"):
        run(_args(), ctx)


@pytest.fixture
def server(ctx: SimpleNamespace) -> Iterator[str]:
    from rentlake.cli.cmd_estimate import predict_handler
    from rentlake.cli.cmd_serve import make_server

    srv = make_server(predict_handler(ctx), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _http(
    url: str, method: str = "GET", body: bytes | None = None, ctype: str | None = "application/json"
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_serve_answers_estimates_over_loopback(server: str) -> None:
    # WHEN a client posts a listing THEN the handler's answer comes back as HTTP
    status, headers, data = _http(
        server + "/estimates", "POST", b'{"surface_m2": 30, "current_rent_eur": 2500}'
    )
    assert status == 200 and headers["Content-Type"] == "application/json"
    body = json.loads(data)
    assert (body["rent_eur"], body["verdict"]) == (1192, "above")


def test_serve_passes_errors_and_pages_through(server: str) -> None:
    status, _, data = _http(server + "/estimates", "POST", b"surface=30", "application/x-www-form-urlencoded")
    assert status == 415 and json.loads(data)["error"]["code"] == "unsupported_media_type"
    status, _, data = _http(server + "/estimates", "POST", b'{"surface_m2": 0}')
    assert status == 422 and json.loads(data)["error"]["fields"][0]["field"] == "surface_m2"
    status, _, data = _http(server + "/nowhere?x=1")
    assert status == 404 and json.loads(data)["error"]["code"] == "not_found"
    status, headers, data = _http(server + "/docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"SwaggerUIBundle" in data
    status, _, data = _http(server + "/openapi.json")
    assert status == 200 and "/estimates" in json.loads(data)["paths"]
    status, _, data = _http(server + "/estimates", "POST", b"\xff\xfe binary", "application/octet-stream")
    assert status == 415


def test_serve_never_mixes_concurrent_requests(server: str) -> None:
    # GIVEN 8 clients at once, each asking for its own surface (and half of them for a malformed one)
    from concurrent.futures import ThreadPoolExecutor

    from rentlake.runtime.testing import expected_rent

    def ask(i: int) -> list[tuple[int, int, int]]:
        out = []
        for _ in range(40):
            surface = 20 + i
            body = b'{"surface_m2": %d}' % surface if i % 2 else b'{"surface_m2": %d' % surface
            status, _, data = _http(server + "/estimates", "POST", body)
            rent = json.loads(data).get("rent_eur", -1) if status == 200 else -1
            out.append((surface, status, rent))
        return out

    with ThreadPoolExecutor(8) as pool:
        answers = [a for per in pool.map(ask, range(8)) for a in per]
    # THEN every answer is the answer to its own request: no 5xx, no rent of another client's surface
    for surface, status, rent in answers:
        if surface % 2:  # i odd: well-formed
            assert status == 200 and rent == round(expected_rent(surface)), (surface, status, rent)
        else:
            assert status == 400, (surface, status)

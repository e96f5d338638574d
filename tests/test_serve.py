"""The latent explorer: request validation, and the page driven by headless Chromium."""

import contextlib
import os
import shutil
import threading
from pathlib import Path

import pytest

import vaekit
from vaekit.serve import create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def app(digits_run):
    return create_app(vaekit.Run.load(digits_run))


@pytest.fixture
def client(app):
    return app.test_client()


def test_info_and_decoding(client):
    info = client.get("/api/info").get_json()
    assert info["latent"] == 4 and sorted(info["order"]) == [0, 1, 2, 3]
    assert len(info["points"]) == 180 and len(info["labels"]) == 180
    r = client.post("/api/decode", json={"z": [0.1, -0.2, 0.3, 0.0]})
    assert r.status_code == 200 and r.get_json()["image"].startswith("data:image/png;base64,")
    r = client.post("/api/decode_point", json={"x": 0.5, "y": -1})
    assert r.status_code == 200 and len(r.get_json()["z"]) == 4
    r = client.get("/api/example/3").get_json()
    assert len(r["z"]) == 4 and r["example"]["image"] != r["reconstruction"]["image"]
    r = client.post("/api/interpolate", json={"a": 0, "b": 5, "steps": 6})
    assert r.status_code == 200
    assert info["measure"] == "KL" and info["order"] == sorted(range(4), key=lambda d: -info["activity"][d])
    r = client.post("/api/traverse", json={"z": [0.1, -0.2, 0.3, 0.0], "dim": info["order"][0], "steps": 5})
    j = r.get_json()
    assert r.status_code == 200 and len(j["values"]) == 5 and j["image"].startswith("data:image/png;base64,")
    assert j["values"][0] == pytest.approx(info["ranges"][info["order"][0]][0])


@pytest.mark.parametrize("path,payload,fragment", [
    ("/api/decode", {"z": [0.0, 1.0]}, "list of 4 numbers"),
    ("/api/decode", {"z": [0.0, 1.0, "a", 2.0]}, "z[2]"),
    ("/api/decode", {"z": [0.0, 1.0, True, 2.0]}, "z[2]"),
    ("/api/decode", {"z": "0,1,2,3"}, "list of 4"),
    ("/api/decode", {}, "list of 4"),
    ("/api/decode", [1, 2, 3, 4], "JSON object"),
    ("/api/decode_point", {"x": "left", "y": 0}, "x must be"),
    ("/api/decode_point", {"x": 1e400, "y": 0}, "x must be"),
    ("/api/interpolate", {"a": 0, "b": 999}, "'b'"),
    ("/api/interpolate", {"a": -1, "b": 1}, "'a'"),
    ("/api/interpolate", {"a": 0, "b": 1, "steps": 1000}, "'steps'"),
    ("/api/traverse", {"z": [0.0, 0.0, 0.0, 0.0], "dim": 4}, "'dim'"),
    ("/api/traverse", {"z": [0.0, 0.0], "dim": 0}, "list of 4"),
])
def test_bad_requests_get_400_with_a_message(client, path, payload, fragment):
    r = client.post(path, json=payload)
    assert r.status_code == 400
    assert fragment in r.get_json()["error"]


def test_text_run_decodes_to_lines(tmp_path):
    from test_text import make_names, text_config

    run = vaekit.train(text_config(make_names(tmp_path / "n.txt", 120), epochs=1), out=tmp_path / "r", quiet=True,
                       pictures=False)
    c = create_app(vaekit.Run.load(run.path)).test_client()
    info = c.get("/api/info").get_json()
    assert info["modality"] == "text"
    r = c.post("/api/decode", json={"z": [0.0] * info["latent"]}).get_json()
    assert isinstance(r["text"], str) and r["text"] and "image" not in r
    r = c.post("/api/interpolate", json={"a": 0, "b": 1, "steps": 4}).get_json()
    assert len(r["text"].split("\n")) == 6
    assert c.post("/api/decode", json={"z": [0.0]}).status_code == 400


def test_audio_run_decodes_to_sound_and_spectrogram(tmp_path):
    from test_audio import make_wavs

    cfg = vaekit.Config()
    cfg.data.source, cfg.data.clip_seconds, cfg.data.n_mels = str(make_wavs(tmp_path / "w", 5)), 0.5, 32
    cfg.model.latent, cfg.model.channels, cfg.train.epochs = 3, [8], 1
    run = vaekit.train(cfg, out=tmp_path / "r", quiet=True, pictures=False)
    c = create_app(vaekit.Run.load(run.path)).test_client()
    r = c.post("/api/decode", json={"z": [0.0, 0.5, -0.5]}).get_json()
    assert r["image"].startswith("data:image/png;base64,") and r["audio"].startswith("data:audio/wav;base64,")


def test_not_json_and_unknown_paths(client):
    r = client.post("/api/decode", data="z=1", content_type="text/plain")
    assert r.status_code == 400 and "JSON" in r.get_json()["error"]
    assert client.get("/api/example/5000").status_code == 400
    assert client.get("/api/nothing").status_code == 404
    assert client.get("/api/decode").status_code == 405


@pytest.fixture
def server(app):
    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}/"
    srv.shutdown()


def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return sync_playwright


@contextlib.contextmanager
def explorer_page(app):
    """A headless Chromium page of the explorer served from ``app``, ready; yields (page, errors)."""
    from werkzeug.serving import make_server

    sync_playwright = browser()
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = b.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{srv.server_port}/")
            page.wait_for_selector("body[data-ready='1']", timeout=30000)
            yield page, errors
            b.close()
    finally:
        srv.shutdown()


def test_explorer_in_headless_chromium(server, tmp_path):
    sync_playwright = browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = b.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server)
        page.wait_for_selector("body[data-ready='1']", timeout=30000)
        img = page.locator("#decoded")
        first = img.get_attribute("src")
        assert first.startswith("data:image/png")

        page.locator("#map").click(position={"x": 300, "y": 120})
        page.wait_for_function("s => document.querySelector('#decoded').src !== s", arg=first, timeout=15000)
        clicked = img.get_attribute("src")
        assert "nearest test example" in page.locator("#status").inner_text()

        top = page.evaluate("() => document.querySelector('#sliders input').dataset.dim")
        slider = page.locator(f"#s{top}")
        slider.focus()
        for _ in range(60):
            page.keyboard.press("ArrowRight")
        page.wait_for_function("s => document.querySelector('#decoded').src !== s", arg=clicked, timeout=15000)
        assert img.get_attribute("src") != clicked

        page.click(f"#sliders button >> nth=0")
        page.wait_for_function("() => document.querySelector('#trav').src.startsWith('data:image/png')",
                               timeout=15000)
        assert page.locator("#travStatus").inner_text().startswith(f"z{top} from")

        page.fill("#a", "0")
        page.fill("#b", "7")
        page.click("#interp")
        page.wait_for_function("() => document.querySelector('#strip').src.startsWith('data:image/png')",
                               timeout=15000)
        shot = tmp_path / "explorer.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("VAEKIT_SCREENSHOT"):
            shutil.copy(shot, os.environ["VAEKIT_SCREENSHOT"])
        b.close()
    assert not errors, errors
    assert shot.stat().st_size > 10000


def test_a_request_too_large_gets_413_with_a_message(client):
    from vaekit.serve import MAX_REQUEST_BYTES

    r = client.post("/api/decode", data=b"[" + b"0," * MAX_REQUEST_BYTES + b"0]", content_type="application/json")
    assert r.status_code == 413 and "error" in r.get_json()


def test_a_client_that_never_sends_its_body_is_dropped(digits_run):
    """A connection that announces a body and never sends it is closed after the timeout, and the
    server goes on answering others meanwhile."""
    import json
    import socket
    import time
    import urllib.request

    from vaekit.serve import make_explorer_server

    srv = make_explorer_server(vaekit.Run.load(digits_run), "127.0.0.1", 0, timeout=1.0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        port = srv.server_port
        stuck = socket.create_connection(("127.0.0.1", port))
        stuck.sendall(b"POST /api/decode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=10) as r:  # others are served
            assert json.load(r)["latent"] == 4
        stuck.settimeout(10)  # were it never closed, recv would raise after 10 s and the test fail
        start = time.time()
        while stuck.recv(1024):  # the server may answer the cut request; then it closes the connection
            pass
        assert time.time() - start < 8
        stuck.close()
    finally:
        srv.shutdown()

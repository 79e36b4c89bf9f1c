"""`kdsr serve`: the job runner, and the page end to end in a real headless Chromium (Debian's, through Playwright)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kdsr.checkpoint import save_model
from kdsr.errors import KDSRError
from kdsr.image_io import read_image, write_image
from tests.conftest import ASSETS, REPO, steerable_model, synthetic_image, tiny_model

pytest.importorskip("gradio")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture()
def server(tmp_path):
    from kdsr.web.app import Server

    model = tmp_path / "tiny.safetensors"
    save_model(tiny_model(), model)
    return Server({"tiny": str(model)}, tmp_path / "work")


def test_job_writes_results_zip_and_slider_and_reports_bad_files(server, tmp_path):
    (tmp_path / "work").mkdir()
    write_image(tmp_path / "a.png", synthetic_image(10, 12))
    write_image(tmp_path / "b.jpg", synthetic_image(6, 8))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    out = server.run([str(tmp_path / n) for n in ("a.png", "bad.png", "b.jpg")], "tiny", "x4", "fp32", 0)
    assert [Path(p).name for p in out["results"]] == ["a_out.png", "b_out.jpg"]
    assert read_image(out["results"][0]).shape == (40, 48, 3)
    assert read_image(out["slider"][0]).shape == (40, 48, 3) and out["slider"][1] == out["results"][0]
    assert sorted(zipfile.ZipFile(out["zip"]).namelist()) == ["a_out.png", "b_out.jpg"]
    assert "bad.png: " in out["log"][1] and "12x10 -> 48x40" in out["log"][0]
    assert all(Path(p).is_relative_to(tmp_path / "work") for p in out["results"])  # nothing outside the workdir
    two = server.run([str(tmp_path / "a.png")], "tiny", "x2", "fp32", 0)
    assert read_image(two["results"][0]).shape == (20, 24, 3)
    with pytest.raises(KDSRError, match="add one or more images"):
        server.run([], "tiny", "x4", "fp32", 0)
    with pytest.raises(KDSRError, match="unknown model"):
        server.run([str(tmp_path / "a.png")], "other", "x4", "fp32", 0)


def test_two_uploads_with_one_name_keep_both_results(server, tmp_path):
    (tmp_path / "work").mkdir(exist_ok=True)
    write_image(tmp_path / "x" / "same.png", synthetic_image(10, 12, seed=1))
    write_image(tmp_path / "y" / "same.png", synthetic_image(10, 12, seed=2))
    out = server.run([str(tmp_path / d / "same.png") for d in "xy"], "tiny", "x4", "fp32", 0)
    assert [Path(p).name for p in out["results"]] == ["same_out.png", "same_out-2.png"]
    first, second = (read_image(p) for p in out["results"])
    assert (first != second).any()
    assert sorted(zipfile.ZipFile(out["zip"]).namelist()) == ["same_out-2.png", "same_out.png"]


def test_a_model_with_an_estimator_says_what_it_sees(tmp_path):
    """The page's log line for each image reads the degradation off the IDR when the model carries an estimator
    (kdsr-iso-x4 does), as `kdsr upscale -v` does: the sample blurred with sigma 1 and 3 reads near each (1.5 and
    3.0 when this test was written), in that order."""
    from kdsr.degradations import classic
    from kdsr.degradations.kernels import isotropic_gaussian
    from kdsr.image_io import read_rgb8
    from kdsr.image_tensor import image_to_tensor, tensor_to_image
    from kdsr.web.app import Server

    server = Server({"kdsr-iso-x4": "kdsr-iso-x4"}, tmp_path / "work")
    (tmp_path / "work").mkdir()
    hr = image_to_tensor(read_rgb8(ASSETS / "sample.png")[:80, :120])
    read = []
    for sigma in (1.0, 3.0):
        write_image(tmp_path / "a.png", tensor_to_image(classic.degrade(hr, isotropic_gaussian(sigma)[0], 4)))
        line = server.run([str(tmp_path / "a.png")], "kdsr-iso-x4", "x4", "fp32", 0)["log"][0]
        assert line.startswith("a.png: 30x20 -> 120x80; the model sees blur sigma (HR px) "), line
        read.append(float(line.rsplit(" ", 1)[1]))
    assert abs(read[0] - 1.0) < 0.8 and abs(read[1] - 3.0) < 0.8 and read[0] < read[1], read


def test_the_dials_open_at_the_estimate_and_steer_the_job(tmp_path):
    """The page's degradation dials: the estimate of the first image to open at, and a job steered by them (as
    `kdsr upscale --assume / --denoise`), which says what it restored as."""
    from kdsr.inference.upscaler import Upscaler
    from kdsr.web.app import Server

    model = steerable_model(tmp_path / "steer.safetensors")
    server = Server({"steer": str(model)}, tmp_path / "work")
    (tmp_path / "work").mkdir()
    image = synthetic_image(24, 32)
    write_image(tmp_path / "a.png", image)
    estimate = server.estimate(str(tmp_path / "a.png"), "steer")
    assert set(estimate) == {"blur_sigma", "noise", "jpeg_quality"}
    blind = server.run([str(tmp_path / "a.png")], "steer", "x4", "fp32", 0)
    kept = server.run([str(tmp_path / "a.png")], "steer", "x4", "fp32", 0, assume={"noise": 30.0}, denoise=0.5)
    assert "restored as" in kept["log"][0] and "noise (0-255) 15.0" in kept["log"][0]
    assert "restored as" not in blind["log"][0]
    expected = Upscaler(str(model), precision="fp32", tile=0, assume={"noise": 30.0}, denoise=0.5).upscale(image)
    got = read_image(kept["results"][0])
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert (got != read_image(blind["results"][0])).any()
    assert server.estimate(str(tmp_path / "missing.png"), "steer") is None


def test_the_detail_slider_blends_the_model_with_its_partner(tmp_path, monkeypatch):
    from kdsr import detail
    from kdsr.inference.upscaler import Upscaler
    from kdsr.web.app import Server

    monkeypatch.setenv("KDSR_CACHE", str(tmp_path / "cache"))
    faithful, sharp = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_model(tiny_model(seed=1), faithful)
    save_model(tiny_model(seed=2), sharp)
    monkeypatch.setitem(detail.DETAIL_PARTNERS, str(faithful), str(sharp))
    server = Server({"a": str(faithful)}, tmp_path / "work")
    (tmp_path / "work").mkdir()
    write_image(tmp_path / "x.png", synthetic_image(24, 32))
    runs = {d: read_image(server.run([str(tmp_path / "x.png")], "a", "x4", "fp32", 0, detail=d)["results"][0])
            for d in (0.0, 0.5, 1.0)}  # fmt: skip
    expected = Upscaler(str(sharp), precision="fp32", tile=0).upscale(synthetic_image(24, 32))
    assert np.abs(runs[1.0].astype(int) - expected.astype(int)).max() <= 1
    assert (runs[0.5] != runs[0.0]).any() and (runs[0.5] != runs[1.0]).any()
    assert server.run([str(tmp_path / "x.png")], "a", "x4", "fp32", 0, detail=0.5)["log"][0].endswith("; detail 0.5")


def test_pixel_limit_applies(server, tmp_path):
    (tmp_path / "work").mkdir()
    server.max_pixels = 50
    write_image(tmp_path / "a.png", synthetic_image(10, 12))
    out = server.run([str(tmp_path / "a.png")], "tiny", "x4", "fp32", 0)
    assert out["results"] == [] and "over the limit" in out["log"][0] and out["zip"] is None


def test_offered_models(tmp_path):
    from kdsr.cli.serve import offered_models

    assert list(offered_models(None))[0] == "kdsr-real-x4"
    model = tmp_path / "m.safetensors"
    save_model(tiny_model(), model)
    assert offered_models([str(model), "kdsr-iso-x4"]) == {"m.safetensors": str(model), "kdsr-iso-x4": "kdsr-iso-x4"}
    with pytest.raises(KDSRError, match="unknown model"):
        offered_models(["nowhere.pt"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_page_in_a_real_browser(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    model = steerable_model(tmp_path / "tiny.safetensors")  # with an estimator and an IDR map: the dials work
    image = tmp_path / "photo.png"
    write_image(image, synthetic_image(24, 32))
    port, temp = _free_port(), tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "kdsr", "serve", "--port", str(port), "-n", str(model)]
    log = tmp_path / "serve.log"  # a file, not a pipe: an unread pipe that fills up would block the server
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                assert process.poll() is None and time.time() < deadline, process.stdout.read().decode()
                time.sleep(0.5)
        flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[*flags, "--no-first-run", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_default_timeout(120_000)  # a loaded CI machine: the page and the upload can take a while
            page.locator("#inputs input[type=file]").set_input_files(str(image))
            page.wait_for_selector("#inputs :text('photo.png')")
            # the noise dial opens at what the model reads off the image (the fixture's estimator: about 10)
            page.wait_for_function("document.querySelector('#noise input[type=number]').value != '0'")
            page.locator("#denoise input[type=number]").fill("0.5")
            page.locator("#denoise input[type=number]").press("Enter")
            page.click("#run")
            page.wait_for_selector("#downloads a", timeout=120_000)
            said = page.locator("#log textarea").input_value()
            assert "32x24 -> 128x96" in said and "restored as" in said
            with page.expect_download() as download:
                page.locator("#downloads a").first.click()
            result = tmp_path / "downloaded.png"
            download.value.save_as(result)
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            browser.close()
        assert read_image(result).shape == (96, 128, 3)  # the downloaded file decodes, at x4
        assert (tmp_path / "page.png").stat().st_size > 10_000
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C, as a person stops it
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"kdsr serve did not stop within 60 s of Ctrl-C:\n{log.read_text()[-2000:]}")
    assert not list(temp.glob("kdsr-serve-*"))  # the working folder is gone with the server
    said = log.read_text()
    assert f"kdsr serve: http://127.0.0.1:{port}/ (Ctrl-C to stop)" in said and "kdsr serve: stopped" in said
    assert "share=True" not in said and "Keyboard interruption" not in said

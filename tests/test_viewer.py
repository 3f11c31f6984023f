"""The interactive token-budget page (:mod:`videoflex.io.viewer`, ``videoflex reconstruct --html``).

The browser tests drive a real headless Chromium through the Chrome DevTools Protocol over a pipe
(``--remote-debugging-pipe``: JSON messages ending in a NUL byte on file descriptors 3 and 4), so they need no
Python package beyond the standard library; they are marked ``browser`` and skipped when no Chromium is
installed (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from videoflex.cli.main import main
from videoflex.io.video import encode_mp4
from videoflex.io.viewer import BudgetView, viewer_html, write_viewer
from videoflex.tokenizers.flex.model import VideoFlexTok

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "assets" / "carphone.mp4"
DEMO = ROOT / "checkpoints" / "demo"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _views(t: int = 5, size: int = 16, keeps=(1, 4, 16)) -> tuple[torch.Tensor, list[BudgetView]]:
    g = torch.Generator().manual_seed(0)
    original = torch.rand(3, t, size, size, generator=g) * 2 - 1
    views = [BudgetView(k, k * 2, 10.0 + k, 0.1 + 0.05 * i, (original * (i + 1) / len(keeps)).clamp(-1, 1))
             for i, k in enumerate(keeps)]
    return original, views


# ----------------------------------------------------------------------------- the page, without a browser


def test_page_is_self_contained_and_reproducible(tmp_path):
    original, views = _views()
    a = write_viewer(tmp_path / "a.html", original, views, 8.0, codebook_size=64000, token_steps=2,
                     notes=["<clip> & notes"])
    b = write_viewer(tmp_path / "b.html", original, views, 8.0, codebook_size=64000, token_steps=2,
                     notes=["<clip> & notes"])
    text = a.read_text()
    assert a.read_bytes() == b.read_bytes()
    assert "&lt;clip&gt; &amp; notes" in text  # plain text, escaped
    assert not re.search(r"""(src|href)=["'](?!data:)""", text)  # nothing fetched: every source inline
    assert "http://" not in text and "https://" not in text
    # one video per k plus the original, each the mp4 of its tensor
    sources = re.findall(r'<video id="([^"]+)"[^>]* src="data:video/mp4;base64,([^"]+)"', text)
    assert [name for name, _ in sources] == ["original", "recon-k1", "recon-k4", "recon-k16"]
    assert base64.b64decode(sources[2][1]) == encode_mp4(views[1].video, 8.0)
    data = json.loads(re.search(r'<script type="application/json" id="vf-data">(.*?)</script>', text, re.DOTALL)[1])
    assert [v["keep"] for v in data["views"]] == [1, 4, 16]
    assert data["bits_per_token"] == pytest.approx(np.log2(64000))
    assert text.count('class="pt psnr') == 3 and text.count('class="pt ssim') == 3  # a chart point per k


def test_page_refuses_bad_input():
    original, views = _views()
    with pytest.raises(ValueError, match="ascending"):
        viewer_html(original, views[::-1], 8.0, codebook_size=8, token_steps=2)
    with pytest.raises(ValueError, match="at least one"):
        viewer_html(original, [], 8.0, codebook_size=8, token_steps=2)
    with pytest.raises(ValueError, match="shape"):
        viewer_html(original[:, :2], views, 8.0, codebook_size=8, token_steps=2)
    with pytest.raises(ValueError, match="fps"):
        viewer_html(original, views, float("nan"), codebook_size=8, token_steps=2)
    with pytest.raises(ValueError, match="codebook_size"):
        viewer_html(original, views, 8.0, codebook_size=1, token_steps=2)


def test_infinite_psnr_is_drawn_and_written_as_json_null():
    original, views = _views(keeps=(1, 2))
    views[1] = BudgetView(2, 4, float("inf"), 1.0, original)
    text = viewer_html(original, views, 8.0, codebook_size=8, token_steps=2)
    data = json.loads(re.search(r'id="vf-data">(.*?)</script>', text, re.DOTALL)[1])
    assert data["views"][1]["psnr"] is None and "k=2: inf" in text


def test_reconstruct_html_writes_the_page(tmp_path, capsys):
    out = tmp_path / "rec"
    code = main(["reconstruct", str(CLIP), "-o", str(out), "--model", "flex-tiny", "--keep", "2,16",
                 "--frames", "5", "--steps", "1", "--quiet", "--html"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    page = out / "index.html"
    assert str(page) in captured.out
    text = page.read_text()
    report = json.loads((out / "metrics.json").read_text())
    data = json.loads(re.search(r'id="vf-data">(.*?)</script>', text, re.DOTALL)[1])
    assert [(v["keep"], v["tokens"]) for v in data["views"]] == [(r["keep"], r["tokens"]) for r in report["results"]]
    assert [v["psnr"] for v in data["views"]] == [r["psnr"] for r in report["results"]]
    assert data["token_steps"] == report["token_steps"] and data["fps"] == report["fps"]


# ----------------------------------------------------------------------------- a real browser


def _browser() -> str | None:
    found = os.environ.get("VIDEOFLEX_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    return found


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (fd 3: commands in, fd 4: replies out)."""

    def __init__(self, binary: str, profile: Path, size=(1000, 760)) -> None:
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def wire() -> None:  # in the child: the ends the browser uses become fds 3 and 4
            a, b = os.dup(to_browser), os.dup(from_browser)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.process = subprocess.Popen(
            [binary, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--mute-audio", "--autoplay-policy=no-user-gesture-required",
             f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # fds 3 and 4 are set by wire(); the test starts no threads, so preexec_fn is safe here
            close_fds=False, preexec_fn=wire)  # noqa: PLW1509
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next = 0
        self.events: list[dict] = []
        self.session = ""

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("no answer from the browser")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, timeout: float = 20.0, session: bool = True, **params) -> dict:
        self._next += 1
        command = {"id": self._next, "method": method, "params": params}
        if session and self.session:
            command["sessionId"] = self.session
        os.write(self._write, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == self._next:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_event(self, method: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._receive(deadline))

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", session=False, url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", session=False, targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable")
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def key(self, key: str, code: int) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._read)
        os.close(self._write)


@pytest.fixture
def browser(tmp_path):
    binary = _browser()
    if binary is None:
        pytest.skip("no Chromium installed (Debian: apt-get install -y chromium; or set VIDEOFLEX_CHROMIUM)")
    tools = DevTools(binary, tmp_path / "profile")
    try:
        yield tools
    finally:
        tools.close()


SHOWN = """(() => { const v = document.querySelector('video.recon.shown');
  return {k: document.body.dataset.k, label: document.getElementById('k-label').textContent,
          id: v.id, src: v.currentSrc || v.src, visible: getComputedStyle(v).visibility,
          readout: document.getElementById('readout').textContent, hash: location.hash}; })()"""


@pytest.mark.browser
def test_slider_swaps_the_reconstruction_in_a_real_browser(tmp_path, browser):
    out = tmp_path / "rec"
    # the shipped demo model: trained, so every k gives a different reconstruction (random weights may not)
    code = main(["reconstruct", str(CLIP), "-o", str(out), "--model", str(DEMO), "--keep", "1,4,16",
                 "--frames", "9", "--quiet", "--html"])
    assert code == 0
    page = out / "index.html"
    text = page.read_text()
    mp4 = dict(re.findall(r'<video id="(recon-k\d+)"[^>]* src="(data:video/mp4;base64,[^"]+)"', text))
    assert len(set(mp4.values())) == 3
    steps = json.loads((out / "metrics.json").read_text())["token_steps"]
    bits = np.log2(VideoFlexTok.from_pretrained(DEMO).codebook_size)
    browser.open(page.as_uri() + "#k=1")
    first = browser.js(SHOWN)
    assert (first["k"], first["label"], first["id"], first["visible"]) == ("1", "k = 1", "recon-k1", "visible")
    assert first["src"] == mp4["recon-k1"]
    assert first["readout"].startswith(f"{steps} tokens (1 x {steps} steps) = {round(steps * bits)} bits (")
    assert browser.js("document.querySelectorAll('video.recon.shown').length") == 1

    # move the slider with the keyboard, as a user would: focus it, press the right arrow twice
    browser.js("document.getElementById('k-slider').focus()")
    browser.key("ArrowRight", 39)
    assert browser.js(SHOWN)["k"] == "4"
    browser.key("ArrowRight", 39)
    moved = browser.js(SHOWN)
    assert (moved["k"], moved["label"], moved["id"], moved["hash"]) == ("16", "k = 16", "recon-k16", "#k=16")
    assert moved["src"] == mp4["recon-k16"] != first["src"]
    assert moved["readout"].startswith(f"{16 * steps} tokens (16 x {steps} steps) = {round(16 * steps * bits)} bits")
    assert browser.js("document.querySelector('.chart .pt.psnr.on').dataset.i") == "2"
    assert browser.js("document.querySelectorAll('video.recon.shown').length") == 1

    # the videos play, and the shown reconstruction keeps to the original's clock
    browser.js("new Promise(r => setTimeout(r, 600))")
    clocks = browser.js("""(() => { const o = document.getElementById('original');
        const r = document.querySelector('video.recon.shown');
        return {error: o.error && o.error.code, t: o.currentTime, paused: o.paused, drift: Math.abs(o.currentTime - r.currentTime),
                playable: o.canPlayType('video/mp4; codecs="avc1.64001e"')}; })()""")
    if clocks["playable"]:  # a Chromium built without H.264 shows the posters only
        assert clocks["error"] is None and not clocks["paused"] and clocks["drift"] < 0.3

    shot = browser.screenshot()
    (tmp_path / "viewer.png").write_bytes(shot)
    image = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert image.std() > 20  # not blank: text, frames and charts
    # the chart colours are on screen (the PSNR line's blue and the SSIM line's orange)
    assert ((image == (0x5F, 0xA8, 0xFF)).all(-1)).sum() > 50 and ((image == (0xFF, 0xB4, 0x54)).all(-1)).sum() > 50

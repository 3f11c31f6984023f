"""An interactive HTML page over the token budget: the original video and its reconstruction from ``k`` tokens
per time step playing in sync, a slider over ``k`` that swaps the reconstruction at once, PSNR and SSIM per
``k`` as two small charts (inline SVG), and the token count and bits for the chosen ``k``.

The page is one self-contained file (:func:`write_viewer`): every video is embedded as an mp4 data URI (H.264,
:func:`~videoflex.io.video.encode_mp4`, with its first frame as a PNG poster), the script and styles are
inline, and nothing is fetched from the network. Every reconstruction is a ``<video>`` element of its own,
loaded when the page opens and kept on the original's clock, so moving the slider only changes which one is
shown. The same inputs give the same bytes (the mp4 encoder and PNG writer are deterministic; nothing depends
on the time or the machine).

Size: about ``(1 + number of k)`` times one mp4 of the clip, times 4/3 for base64: 17 frames of 64x64 take
tens of kB per video; 81 frames of 256x256, a few hundred.

The page reads ``#k=K`` from its address on load (the budget shown first; the nearest one when ``K`` is not
among them) and writes it back when the slider moves, so an address names a view. ``document.body.dataset.k``
holds the ``k`` shown (for tests and scripts).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from videoflex.io.video import atomic_output_path, encode_mp4, video_to_uint8

CHART_WIDTH, CHART_HEIGHT = 300, 150  # pixels of each SVG chart
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 46, 12, 20, 30


@dataclass(frozen=True)
class BudgetView:
    """The reconstruction from the first ``keep`` tokens of every time step.

    keep: tokens per time step ``k`` (>= 1). tokens: tokens in all (``k`` x the time steps). psnr: dB (may
    be ``inf`` for an exact reconstruction). ssim: in [-1, 1]. video: float ``[3, T, H, W]`` in [-1, 1], the
    original's shape.
    """

    keep: int
    tokens: int
    psnr: float
    ssim: float
    video: torch.Tensor


def _data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _poster(video: torch.Tensor) -> str:
    """The first frame of ``[3, T, H, W]`` as a PNG data URI (shown until the video can play)."""
    buffer = io.BytesIO()
    Image.fromarray(video_to_uint8(video[:, :1])[0]).save(buffer, format="PNG", optimize=False)
    return _data_uri("image/png", buffer.getvalue())


def _number(value: float, digits: int) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _chart(title: str, unit: str, keeps: Sequence[int], values: Sequence[float], digits: int, css: str) -> str:
    """An SVG line chart of ``values`` over ``keeps`` (log2 axis), one marker per point (``data-i``: its
    index; the page highlights the chosen one). Infinite values are drawn at the top and labelled ``inf``."""
    finite = [v for v in values if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad
    x0, x1 = _MARGIN_LEFT, CHART_WIDTH - _MARGIN_RIGHT
    y0, y1 = CHART_HEIGHT - _MARGIN_BOTTOM, _MARGIN_TOP
    lo2, hi2 = math.log2(keeps[0]), math.log2(keeps[-1])

    def x(k: int) -> float:
        return (x0 + x1) / 2 if hi2 == lo2 else x0 + (math.log2(k) - lo2) / (hi2 - lo2) * (x1 - x0)

    def y(v: float) -> float:
        v = high if not math.isfinite(v) else v
        return y0 - (v - low) / (high - low) * (y0 - y1)

    heading = f"{title} ({unit})" if unit else title
    parts = [(f'<svg class="chart" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" width="{CHART_WIDTH}" '
              f'height="{CHART_HEIGHT}" role="img" aria-label="{html.escape(title)} per k">'),
             f'<text x="{x0}" y="13" class="title">{html.escape(heading)}</text>',
             f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" class="axis"/>',
             f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" class="axis"/>']
    for v in (low + pad, high - pad):
        parts.append(f'<text x="{x0 - 4}" y="{y(v) + 4:.1f}" class="tick" text-anchor="end">'
                     f'{_number(v, digits)}</text>')
    for k in keeps:
        parts.append(f'<text x="{x(k):.1f}" y="{y0 + 14}" class="tick" text-anchor="middle">{k}</text>')
    parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{CHART_HEIGHT - 3}" class="tick" text-anchor="middle">'
                 "k (tokens per step, log scale)</text>")
    points = " ".join(f"{x(k):.1f},{y(v):.1f}" for k, v in zip(keeps, values, strict=True))
    parts.append(f'<polyline points="{points}" class="line {css}"/>')
    for i, (k, v) in enumerate(zip(keeps, values, strict=True)):
        parts.append(f'<circle cx="{x(k):.1f}" cy="{y(v):.1f}" r="4" class="pt {css}" data-i="{i}">'
                     f"<title>k={k}: {_number(v, digits)}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;background:#111;color:#ddd;margin:16px}
h1{font-size:18px;margin:0 0 4px} .notes{color:#999;margin:0 0 12px}
.videos{display:flex;gap:12px;align-items:flex-start}
figure{margin:0} figcaption{margin:2px 0 4px;color:#bbb}
.stack{position:relative}
video{display:block;image-rendering:pixelated;background:#000}
video.recon{position:absolute;left:0;top:0;visibility:hidden} video.recon.shown{visibility:visible}
.controls{margin:12px 0;display:flex;gap:12px;align-items:center;flex-wrap:wrap}
input[type=range]{width:320px} #k-label{font-weight:bold;min-width:5em}
#readout{font-variant-numeric:tabular-nums;margin:0 0 10px}
.charts{display:flex;gap:16px}
.chart .axis{stroke:#777} .chart .tick{fill:#aaa;font-size:10px} .chart .title{fill:#ddd;font-size:12px}
.chart .line{fill:none;stroke-width:2} .chart .psnr{stroke:#5fa8ff} .chart .ssim{stroke:#ffb454}
.chart .pt{fill:#111;stroke-width:2} .chart .pt.on{r:6px} .chart .pt.psnr.on{fill:#5fa8ff}
.chart .pt.ssim.on{fill:#ffb454}
"""

_SCRIPT = """
(function(){
const data = JSON.parse(document.getElementById('vf-data').textContent);
const views = data.views;
const slider = document.getElementById('k-slider');
const original = document.getElementById('original');
const recons = Array.from(document.querySelectorAll('video.recon'));
const label = document.getElementById('k-label');
const readout = document.getElementById('readout');
const play = document.getElementById('play');
const fmt = (v, d) => v === null ? 'inf' : v.toFixed(d);
function show(i){
  const v = views[i];
  recons.forEach((el, j) => el.classList.toggle('shown', j === i));
  document.querySelectorAll('.chart .pt').forEach(el => el.classList.toggle('on', +el.dataset.i === i));
  slider.value = i;
  label.textContent = 'k = ' + v.keep;
  document.getElementById('recon-caption').textContent =
    'reconstruction from ' + v.keep + ' token' + (v.keep === 1 ? '' : 's') + ' per step';
  const bits = v.tokens * data.bits_per_token;
  readout.textContent = v.tokens + ' tokens (' + v.keep + ' x ' + data.token_steps + ' steps) = ' +
    Math.round(bits) + ' bits (' + v.tokens + ' x log2 ' + data.codebook_size + ' = ' +
    data.bits_per_token.toFixed(2) + ' bits each);  PSNR ' + fmt(v.psnr, 2) + ' dB,  SSIM ' + fmt(v.ssim, 3);
  document.body.dataset.k = v.keep;
  if (location.hash !== '#k=' + v.keep) history.replaceState(null, '', '#k=' + v.keep);
}
function fromHash(){
  const m = /^#k=(\\d+)$/.exec(location.hash);
  if (!m) return views.length - 1;
  const k = +m[1];
  let best = 0;
  views.forEach((v, i) => { if (Math.abs(v.keep - k) < Math.abs(views[best].keep - k)) best = i; });
  return best;
}
function sync(){
  const t = original.currentTime;
  for (const el of recons){
    if (Math.abs(el.currentTime - t) > 0.5 / data.fps) el.currentTime = t;
    if (original.paused && !el.paused) el.pause();
    if (!original.paused && el.paused) el.play().catch(() => {});
  }
  play.textContent = original.paused ? 'play' : 'pause';
}
slider.addEventListener('input', () => { show(+slider.value); sync(); });
window.addEventListener('hashchange', () => show(fromHash()));
for (const name of ['play', 'pause', 'seeked', 'ratechange']) original.addEventListener(name, sync);
setInterval(sync, 250);
play.addEventListener('click', () => { if (original.paused) original.play().catch(() => {}); else original.pause(); });
show(fromHash());
original.play().catch(() => {});
})();
"""


def viewer_html(
    original: torch.Tensor,
    views: Sequence[BudgetView],
    fps: float,
    *,
    codebook_size: int,
    token_steps: int,
    title: str = "videoflex: quality over the token budget",
    notes: Sequence[str] = (),
    scale: int | None = None,
) -> str:
    """The page (see the module docstring) as HTML text.

    Args:
        original: float ``[3, T, H, W]`` in [-1, 1].
        views: one per ``k``, ascending ``keep``, distinct; every video of the original's shape.
        fps: frame rate of the videos (> 0).
        codebook_size: distinct token ids (>= 2); a token carries ``log2(codebook_size)`` bits.
        token_steps: latent time steps (``tokens = keep x token_steps``).
        title, notes: heading and lines under it (plain text; escaped).
        scale: display magnification of the frames (default: the smallest that shows them at least 256 px
            wide, pixels kept sharp).

    Raises:
        ValueError: no views, unsorted or repeated ``keep``, a shape mismatch, or a bad number.
    """
    if not views:
        raise ValueError("give at least one BudgetView")
    keeps = [v.keep for v in views]
    if any(k < 1 for k in keeps) or keeps != sorted(set(keeps)):
        raise ValueError(f"keep values must be distinct, >= 1 and ascending, got {keeps}")
    if original.ndim != 4 or original.shape[0] != 3:
        raise ValueError(f"original: expected a video [3, T, H, W], got shape {list(original.shape)}")
    for v in views:
        if tuple(v.video.shape) != tuple(original.shape):
            raise ValueError(f"k={v.keep}: video shape {list(v.video.shape)}, the original's "
                             f"{list(original.shape)}")
    if not fps > 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be a finite number > 0, got {fps}")
    if codebook_size < 2:
        raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
    if token_steps < 1:
        raise ValueError(f"token_steps must be >= 1, got {token_steps}")
    _, _, h, w = original.shape
    scale = scale or max(1, math.ceil(256 / w))
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    width, height = w * scale, h * scale
    data = {
        "fps": fps, "codebook_size": codebook_size, "bits_per_token": math.log2(codebook_size),
        "token_steps": token_steps,
        "views": [{"keep": v.keep, "tokens": v.tokens, "psnr": v.psnr if math.isfinite(v.psnr) else None,
                   "ssim": v.ssim} for v in views],
    }
    payload = json.dumps(data, sort_keys=True).replace("</", "<\\/")

    def video_tag(video: torch.Tensor, element_id: str, classes: str, extra: str) -> str:
        source = _data_uri("video/mp4", encode_mp4(video, fps))
        return (f'<video id="{element_id}" class="{classes}" width="{width}" height="{height}" muted loop '
                f'playsinline preload="auto" {extra}poster="{_poster(video)}" src="{source}"></video>')

    recon_tags = "\n".join(video_tag(v.video, f"recon-k{v.keep}", "recon", f'data-k="{v.keep}" ')
                           for v in views)
    note_lines = "".join(f"<div>{html.escape(line)}</div>" for line in notes)
    psnr = _chart("PSNR", "dB", keeps, [v.psnr for v in views], 1, "psnr")
    ssim = _chart("SSIM", "", keeps, [v.ssim for v in views], 3, "ssim")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<div class="notes">{note_lines}</div>
<div class="videos">
<figure><figcaption>original</figcaption>
{video_tag(original, "original", "original", "controls ")}
</figure>
<figure><figcaption id="recon-caption">reconstruction</figcaption>
<div class="stack" style="width:{width}px;height:{height}px">
{recon_tags}
</div>
</figure>
</div>
<div class="controls">
<button id="play" type="button">pause</button>
<label for="k-slider">token budget</label>
<input id="k-slider" type="range" min="0" max="{len(views) - 1}" step="1" value="{len(views) - 1}"
 list="k-ticks" aria-label="tokens per time step">
<datalist id="k-ticks">{"".join(f'<option value="{i}" label="{k}"></option>' for i, k in enumerate(keeps))}</datalist>
<span id="k-label">k = {keeps[-1]}</span>
</div>
<div id="readout"></div>
<div class="charts">
{psnr}
{ssim}
</div>
<script type="application/json" id="vf-data">{payload}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def write_viewer(
    path: str | os.PathLike,
    original: torch.Tensor,
    views: Sequence[BudgetView],
    fps: float,
    *,
    codebook_size: int,
    token_steps: int,
    title: str = "videoflex: quality over the token budget",
    notes: Sequence[str] = (),
    scale: int | None = None,
) -> Path:
    """Write :func:`viewer_html` to ``path`` (UTF-8, written under a temporary name and renamed when complete;
    the folder must exist). Returns ``path``. Raises as :func:`viewer_html`, ``FileNotFoundError`` for a
    missing folder."""
    text = viewer_html(original, views, fps, codebook_size=codebook_size, token_steps=token_steps, title=title,
                       notes=notes, scale=scale)
    path = Path(path)
    with atomic_output_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path

"""Principal components as the starting point of a flex tokenizer's linear paths.

A linear code of a step's latents (principal components, truncated and quantised) is already a
coarse-to-fine code: its first coefficients carry the most variance, and any prefix of them is the best
linear reconstruction of that length. :func:`fit_linear_paths` sets the encoder's and the decoder's linear
paths (``EncoderConfig.linear_path``, ``DecoderConfig.linear_path`` with ``linear_input="codes"``) to such a
code, fitted to training clips, and zeroes the transformers' contributions, so that training starts from
the linear code and the transformers learn what it misses. Not in the paper (whose tokenizer starts from
random weights); for the small CPU models, whose encoders trained from scratch fall short of a linear code
of their budget on held-out clips (see ``checkpoints/demo/README.md``).

The paths are factorised as the model builds them (patch values -> r values per patch -> the step's
``N x d`` codes, and back), so the code is fitted in two stages: principal components of single patches
(r kept), then of a step's ``L x r`` reduced values (``N x d`` kept, ordered by variance), coefficient
``i`` going to token ``i // d``, FSQ channel ``i % d``. With residual tokens (``FSQConfig.residuals``) the
coefficients skip them: a residual token's slot in the decoder is its source's scaled to the finer step
(:meth:`~videoflex.nn.fsq.FSQ.residual_gain`), and its encoder slot is zero (FSQ fills it). With FSQ's tanh
bound (``FSQConfig.bound="tanh"``) each coefficient is divided by ``kappa`` times its standard deviation
before the bound (``kappa`` chosen per level count to minimise the quantisation error on the fitted clips),
and the decoder multiplies each code by the least-squares gain back. With the uniform bound (``"clip"``) each
coefficient is divided by :data:`CLIP_RANGE` standard deviations and the decoder multiplies the code by the
same: every coefficient is rounded to the nearest of its levels, spread evenly over +-2.5 standard deviations.

With temporal prediction (``FSQConfig.temporal_prediction``) the fit also sets each coefficient's prediction
gain (the least-squares gain of a step's value on the step before's) and its scale (the fraction of its spread
that the prediction leaves, at least :data:`PREDICTION_SCALE_MIN`), so that each step rounds only what changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from videoflex.nn.flow import nested_budgets
from videoflex.nn.positions import patchify, unpatchify
from videoflex.tokenizers.flex.model import VideoFlexTok

KAPPAS = tuple(0.5 + 0.05 * i for i in range(71))  # candidate kappa: 0.5 .. 4.0 standard deviations
CLIP_RANGE = 2.5
"""With ``FSQConfig.bound="clip"``: each coefficient's quantiser spans +-2.5 of its standard deviations on the
fitted clips, the range of the linear code the demo model is compared with (``scripts/demo_baselines.py``).
Ours, from one-off probes with flex-demo-256 fitted on 2,000 photograph clips: on held-out clips (carphone, and
OpenCV's cup and vtest) the coefficients spread 1.2-1.6 of the fitted clips' standard deviations per band of
coefficients (1.14-1.21 on training clips), and ranges near the optimum for the fitted clips (2.34 for 8 levels,
1.51 for 5) lost up to 0.7 dB on carphone, 2.2 on cup and 1.4 on vtest at k = 4, 32, 256 against 2.5."""


TEMPORAL_CLIPS = 1024
"""Clips the temporal mix (``DecoderConfig.linear_temporal``) is fitted on: 4 pairs of steps each for 17 frames,
64 patches a step, at each budget it is fitted over (k = 1 ... 256 for ``flex-demo-256`` without residual
tokens, k = 1, 2, 4 with them; ours; the blend it fits has r unknowns)."""


PREDICTION_SCALE_MIN = 0.7
"""The least scale of FSQ's temporal prediction (``FSQConfig.temporal_prediction``): the quantiser of a step's
prediction error spans at least 0.7 of the range of the coefficient itself. Ours, from one-off probes with
``flex-demo-256`` fitted on the demo recipe's 4,000 clips (``checkpoints/demo/README.md``): the fitted scales
(0.2 to 0.6 for the leading coefficients) were too narrow for held-out clips with faster motion or cuts
(clipped errors take several steps to catch up); the least scales 0.5 / 0.6 / 0.65 / 0.7 / 0.75 / 0.8 / 0.9
gave 326.2 / 326.9 / 327.2 / 327.2 / 326.8 / 326.5 / 325.7 dB summed over k = 4, 8, 32, 256 on OpenCV's
vtest, tree, box and Megamind (held out; 324.2 without prediction)."""


@dataclass(frozen=True)
class LinearCodeFit:
    """What :func:`fit_linear_paths` fitted.

    patch_variance: fraction of the variance of single patches that the r patch components keep (0..1).
    step_variance: fraction of the variance of whole steps that the step components keep (0..1; ``d`` per token
        that is not a residual token).
    kappa: per FSQ channel, the quantiser's range in standard deviations of the coefficient (the tanh bound's
        scale, or the uniform quantiser's half-range :data:`CLIP_RANGE`).
    code_psnr_db: PSNR (dB, on latents in [-1, 1]) of the fitted clips' latents rebuilt by the quantised
        code at every budget k = 1, 2, 4, ..., N (the starting model's one-step reconstruction).
    """

    patch_variance: float
    step_variance: float
    kappa: tuple[float, ...]
    code_psnr_db: dict[int, float]


def _steps(model: VideoFlexTok, clips: torch.Tensor, batch: int, progress: bool, desc: str):
    """Yield ``(patch values [B,t,L,P] float64, step weights [t])`` for uint8 clips ``[n,3,T,H,W]``."""
    p = model.config.encoder.patch_size
    for start in tqdm(range(0, len(clips), batch), desc=desc, disable=not progress, leave=False):
        video = clips[start:start + batch].float() / 127.5 - 1.0
        with torch.no_grad():
            latents = model.encode_video(video)
        values = patchify(latents, p).double()  # [B,t,L,P]
        t = values.shape[1]
        # the first step stands for one frame, the others for temporal_factor frames each
        weights = torch.ones(t, dtype=torch.float64)
        weights[0] = 1.0 / model.config.vae.temporal_factor
        yield values, weights


def _eigen(symmetric: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending, clamped at 0) and eigenvectors (columns) of a symmetric matrix, each vector with
    a fixed sign (largest entry positive), so that the fit does not depend on the eigen-solver."""
    variance, vectors = torch.linalg.eigh(symmetric)  # ascending
    variance, vectors = variance.flip(0).clamp_min(0.0), vectors.flip(1)
    signs = torch.sign(vectors.gather(0, vectors.abs().argmax(0, keepdim=True)))
    return variance, vectors * torch.where(signs == 0, 1.0, signs)


def _principal(sum_: torch.Tensor, outer: torch.Tensor, total: float, keep: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Weighted mean ``[D]``, top ``keep`` components ``[D, keep]``, their variances ``[keep]`` (descending)
    and the fraction of the total variance they hold, from sums of x and x x^T."""
    mean = sum_ / total
    variance, vectors = _eigen(outer / total - torch.outer(mean, mean))
    kept = float(variance[:keep].sum() / variance.sum().clamp_min(1e-30))
    return mean, vectors[:, :keep], variance[:keep], kept


def _chroma_operator(model: VideoFlexTok) -> torch.Tensor:
    """``[P, P]`` float64: the linear map taking a patch's values to those of its colour part (every pixel minus
    its mean over R, G and B), through the model's VAE, which must be linear (``vae.kind="space_to_depth"``;
    ``ValueError`` otherwise)."""
    if model.config.vae.kind != "space_to_depth":
        raise ValueError(f"fitting the colour token needs a linear VAE (vae.kind='space_to_depth'), got "
                         f"vae.kind={model.config.vae.kind!r}")
    p, size = model.config.encoder.patch_size, model.encoder.linear_patch.in_features
    values = torch.zeros(size, 2, 1, size, dtype=torch.float64)  # one patch, in the second (a full) step
    values[:, 1, 0] = torch.eye(size, dtype=torch.float64)
    video = model.vae.decode(unpatchify(values, p, (1, 1)))
    colour = video - video.mean(dim=1, keepdim=True)
    return patchify(model.vae.encode(colour), p)[:, 1, 0].T  # column i: the image of unit vector i


@torch.no_grad()
def fit_colour_path(model: VideoFlexTok, clips: torch.Tensor, batch: int = 32, progress: bool = True) -> None:
    """Fit the colour token's path (``TokenizerConfig.colour_token``) of a model whose linear paths are set (fitted
    by :func:`fit_linear_paths`, which calls this, or trained on from there), in place.

    In the decoder's reduced coordinates (the r values a patch that ``decoder.linear_out`` maps to the patch's
    latent values; a step has ``S = L*r``), from the step values of ``clips`` (uint8 ``[n,3,T,H,W]``, the first
    step weighted as in the fit): the colour components are the ``d`` directions of largest colour variance (the
    step covariance seen through the colour part of every patch, :func:`_chroma_operator`; the VAE must be linear)
    outside the decoder's directions of the tokens before the colour token, so that the colour adds to what they
    show. Each is quantised over +-:data:`CLIP_RANGE` of its standard deviations: ``encoder.colour_in`` maps the
    encoder's reduced values to them (through the encoder's and decoder's patch maps), ``decoder.colour_read`` /
    ``colour_out`` read and write them, and the decoder's colour gains are fitted last (:func:`_fit_colour_gain`).
    Raises ValueError for a model without a colour token or a linear VAE."""
    config, encoder, decoder = model.config, model.encoder, model.decoder
    if config.colour_token is None:
        raise ValueError(f"{config.name} has no colour token (TokenizerConfig.colour_token)")
    chroma_patch = _chroma_operator(model)  # [P, P]; refuses a VAE that is not linear
    out_weight, out_bias = decoder.linear_out.weight.double(), decoder.linear_out.bias.double()  # [P, r], [P]
    inverse = torch.linalg.pinv(out_weight)  # [r, P]: patch values -> the decoder's reduced values
    size = decoder.grid[0] * decoder.grid[1] * out_weight.shape[1]
    sum_, outer, total = torch.zeros(size, dtype=torch.float64), torch.zeros(size, size, dtype=torch.float64), 0.0
    for values, weights in _steps(model, clips, batch, progress, "colour token: step statistics"):
        y = ((values - out_bias) @ inverse.T).flatten(2)  # [B,t,S]
        w = weights[None, :, None].expand(*y.shape[:2], 1)
        flat, wf = y.reshape(-1, size), w.reshape(-1, 1)
        sum_ += (flat * wf).sum(0)
        outer += (flat * wf).T @ flat
        total += float(wf.sum())
    mean = sum_ / total
    covariance = outer / total - torch.outer(mean, mean)
    del outer
    chroma = torch.block_diag(*[inverse @ chroma_patch @ out_weight] * (decoder.grid[0] * decoder.grid[1]))  # [S, S]
    dim, residual_tokens = config.fsq.dim, {token for token, _ in config.fsq.residuals}
    columns = [token * dim + c for token in range(config.colour_token) if token not in residual_tokens for c in range(dim)]
    leading = torch.linalg.qr(decoder.linear_mix.weight.double()[:, columns])[0] if columns else torch.zeros(size, 0)
    outside = torch.eye(size, dtype=torch.float64) - leading @ leading.T
    colour_covariance = outside @ chroma @ covariance @ chroma.T @ outside
    basis = _eigen((colour_covariance + colour_covariance.T) / 2)[1][:, :dim]  # [S, d]
    std = (basis.T @ covariance @ basis).diagonal().clamp_min(0.0).sqrt().clamp_min(1e-12)  # [d]
    del chroma, colour_covariance, outside, covariance
    # the encoder's reduced values x = W_in v + b_in of patch values v = W_out y + b_out: y = A^-1 (x - e)
    in_weight, in_bias = encoder.linear_patch.weight.double(), encoder.linear_patch.bias.double()  # [r, P], [r]
    patches = decoder.grid[0] * decoder.grid[1]
    to_decoder = torch.block_diag(*[torch.linalg.inv(in_weight @ out_weight)] * patches)  # [S, S]
    offset = to_decoder @ (in_weight @ out_bias + in_bias).repeat(patches)  # [S]
    scale = 1.0 / (CLIP_RANGE * std)
    encoder.colour_in.weight.copy_(((to_decoder.T @ basis) * scale).T)
    encoder.colour_in.bias.copy_(-((offset + mean) @ basis) * scale)
    decoder.colour_out.weight.copy_(basis / scale)
    decoder.colour_read.weight.copy_((basis * scale).T)
    decoder.colour_read.bias.copy_(-(mean @ basis) * scale)
    _fit_colour_gain(model, clips[:min(len(clips), TEMPORAL_CLIPS)], out_bias, inverse.T, batch, progress)


def _linear_codes(model: VideoFlexTok, values: torch.Tensor) -> torch.Tensor:
    """The encoder's values before FSQ ``[B,t,N,d]`` from patch values ``[B,t,L,P]``, while its transformer's
    contribution is zero (the fitted linear path alone)."""
    return model.encoder.linear_codes(values.float())


@torch.no_grad()
def _fit_prediction(model: VideoFlexTok, clips: torch.Tensor, batch: int, progress: bool) -> None:
    """Set FSQ's temporal prediction (``FSQConfig.temporal_prediction``) for the fitted linear code: per token
    and channel the gain ``a`` (least squares of a step's coefficient on the step before's, clipped to [0, 1])
    and the scale ``s = sqrt(E (z_t - a z_{t-1})^2 / E z_t^2)`` (the fraction of the quantiser's range the
    prediction error needs, clipped to [:data:`PREDICTION_SCALE_MIN`, 1]), over every pair of neighbouring
    steps of all ``clips``, the coefficients clipped to the quantiser's range as FSQ reads them. A residual
    token gets ``a = 0`` and its source's ``s`` (it rounds its source's error in its source's units). The
    encoder's linear path must be fitted already."""
    n, dim, fsq = model.config.num_registers, model.config.fsq.dim, model.fsq
    cross = torch.zeros(n, dim, dtype=torch.float64)
    before = torch.zeros(n, dim, dtype=torch.float64)
    after = torch.zeros(n, dim, dtype=torch.float64)
    for values, _ in _steps(model, clips, batch, progress, "linear code: temporal prediction"):
        z = _linear_codes(model, values).double().clamp(-1.0, 1.0)
        pairs = torch.ones(z.shape[1] - 1, n, 1, dtype=torch.float64)
        if model.config.colour_token is not None:  # its first step's colour does not predict the second step
            pairs[:1, model.config.colour_token] = 0.0
        cross += (z[:, 1:] * z[:, :-1] * pairs).sum((0, 1))
        before += (z[:, :-1].square() * pairs).sum((0, 1))
        after += (z[:, 1:].square() * pairs).sum((0, 1))
    gain = (cross / before.clamp_min(1e-30)).clamp(0.0, 1.0)
    error = (after - 2 * gain * cross + gain.square() * before).clamp_min(0.0)
    scale = (error / after.clamp_min(1e-30)).sqrt().clamp(PREDICTION_SCALE_MIN, 1.0)
    for token, source in fsq.residuals:  # in order of token: a source's scale is final when it is read
        gain[token], scale[token] = 0.0, scale[source]
    fsq.prediction_gain.copy_(gain)
    fsq.prediction_scale.copy_(scale)


@torch.no_grad()
def _fit_temporal(model: VideoFlexTok, clips: torch.Tensor, patch_mean: torch.Tensor, patch_basis: torch.Tensor,
                  batch: int, progress: bool) -> None:
    """Set the decoder's temporal mix (``DecoderConfig.linear_temporal``) to a blend: each of the r values a
    patch of step ``t`` moves towards its value in step ``t - 1`` by a fraction ``alpha_j`` (one per value,
    shared by all patches and budgets), fitted by least squares to what step ``t``'s values miss of the clip's
    (its patches projected on the r components), over every step after the first of ``clips`` and every budget
    k = 1, 2, 4, ..., N, each budget's squared error taken relative to its error without the mix (so that the
    coarse budgets' larger errors do not decide alone). A blend rather than the general ``2r -> r`` map: fitted
    on the demo recipe's clips, the general map lost up to 0.27 dB at k >= 32 on held-out clips (cup,
    carphone) where the blend gained up to 0.18 (``checkpoints/demo/README.md``). With residual tokens
    (``FSQConfig.residuals``) only the budgets that read none of them count (k up to the first residual
    token): the finer budgets' rounding is then nearly exact and wants less of the step before, and fitted
    over them too the blend gave up 0.01 dB at k = 4 on carphone (``flex-demo-256``'s start; ours). The
    linear paths must be fitted already."""
    config = model.config
    decoder, fsq = model.decoder, model.fsq
    n, rank = config.num_registers, config.encoder.linear_path
    first_residual = min((token for token, _ in config.fsq.residuals), default=n)
    budgets = tuple(k for k in nested_budgets(n) if k <= first_residual)
    decoder.linear_temporal.weight.zero_()
    along = torch.zeros(len(budgets), rank, dtype=torch.float64)  # sum of error * (previous - current)
    square = torch.zeros(len(budgets), rank, dtype=torch.float64)  # sum of (previous - current)^2
    energy = torch.zeros(len(budgets), dtype=torch.float64)  # squared error without the mix
    for values, _ in _steps(model, clips, batch, progress, "linear code: temporal mix"):
        target = (values - patch_mean) @ patch_basis  # [B,t,L,r]
        b, t = target.shape[:2]
        codes = fsq(_linear_codes(model, values)).codes  # what the encoder gives at the start
        for i, k in enumerate(budgets):
            mixed = decoder.linear_mix(codes.masked_fill(torch.arange(n)[:, None] >= k, 0.0).flatten(2))
            mixed = mixed.view(b, t, -1, rank).double()  # [B,t,L,r]
            step = (mixed[:, :-1] - mixed[:, 1:]).reshape(-1, rank)
            error = (target[:, 1:] - mixed[:, 1:]).reshape(-1, rank)
            along[i] += (error * step).sum(0)
            square[i] += step.square().sum(0)
            energy[i] += error.square().sum()
    weights = 1.0 / energy.clamp_min(1e-30)[:, None]
    alpha = (along * weights).sum(0) / (square * weights).sum(0).clamp_min(1e-30)  # [r]
    decoder.linear_temporal.weight.copy_(torch.cat([alpha.diag(), -alpha.diag()], dim=1))  # [r, 2r]


@torch.no_grad()
def _fit_colour_gain(model: VideoFlexTok, clips: torch.Tensor, out_bias: torch.Tensor, to_reduced: torch.Tensor,
                     batch: int, progress: bool) -> None:
    """Set the decoder's colour gains (``colour_gain``, ``[N, d]``, see :class:`~videoflex.tokenizers.flex.decoder.
    Decoder`): per budget k = 1, 2, 4, ..., N that keeps the colour token and per colour component, the least-squares
    gain ``g`` of the move of a step's colour coordinates ``m`` (the linear path's, before the move) towards the first
    step's colour codes ``c``, fitted to the clip's own coordinates ``a`` over every step after the first of ``clips``:
    ``g = sum (a - m)(c - m) / sum (c - m)^2``, clipped to [0, 1], with the encoder's linear path alone. The kept
    counts between two budgets take the gain of the budget below (those below the colour token, the first
    budget's). ``out_bias [P]`` and ``to_reduced [P, r]`` take patch values to the decoder's reduced values."""
    config, decoder = model.config, model.decoder
    budgets = [k for k in nested_budgets(config.num_registers) if k > config.colour_token]
    along = torch.zeros(len(budgets), config.fsq.dim, dtype=torch.float64)
    square = torch.zeros(len(budgets), config.fsq.dim, dtype=torch.float64)
    decoder.colour_gain.zero_()  # the later steps' coordinates before the move
    for values, _ in _steps(model, clips, batch, progress, "colour token: gains"):
        codes = model.fsq(_linear_codes(model, values)).codes
        target = decoder.colour_read(((values - out_bias) @ to_reduced).flatten(2).float())[:, 1:].double()
        colour = codes[:, :1, config.colour_token].double()  # [B,1,d]
        for i, k in enumerate(budgets):
            mixed = (decoder.code_path(codes, k).double() - out_bias) @ to_reduced  # [B,t,L,r]
            moved = decoder.colour_read(mixed.flatten(2).float())[:, 1:].double()  # [B,t-1,d]
            along[i] += ((target - moved) * (colour - moved)).sum((0, 1))
            square[i] += (colour - moved).square().sum((0, 1))
    gains = (along / square.clamp_min(1e-30)).clamp(0.0, 1.0)  # [budgets, d]
    below = [max([i for i, k in enumerate(budgets) if k <= count], default=0) for count in
             range(1, config.num_registers + 1)]
    decoder.colour_gain.copy_(gains[below])


def linear_code_problem(config: object) -> str | None:
    """Why :func:`fit_linear_paths` cannot start a model of ``config`` (any tokenizer config), or ``None`` when
    it can: it needs a flex config whose encoder and decoder linear paths have one nonzero rank and whose
    decoder's path reads codes."""
    enc, dec = getattr(config, "encoder", None), getattr(config, "decoder", None)
    ranks = getattr(enc, "linear_path", 0), getattr(dec, "linear_path", 0)
    if ranks[0] and ranks[0] == ranks[1] and getattr(dec, "linear_input", None) == "codes":
        return None
    return (f"fit_linear_paths needs equal encoder and decoder linear_path ranks and a decoder whose path reads "
            f"codes; {getattr(config, 'name', config)} has encoder.linear_path={ranks[0]}, "
            f"decoder.linear_path={ranks[1]}, decoder.linear_input={getattr(dec, 'linear_input', None)!r}")


@torch.no_grad()
def fit_linear_paths(model: VideoFlexTok, clips: torch.Tensor, batch: int = 32,
                     progress: bool = True) -> LinearCodeFit:
    """Set ``model``'s linear paths to a two-stage principal-component code of ``clips`` (in place).

    model: a flex tokenizer with ``encoder.linear_path = decoder.linear_path = r`` and the decoder's path
        reading codes (``DecoderConfig.linear_input="codes"``, ``prediction="data"``). Its encoder's code
        projection and decoder's head are zeroed, so its one-step reconstruction is the linear code's. Its
        residual tokens (``FSQConfig.residuals``) take no coefficient of their own: they refine their sources'.
        With temporal prediction (``FSQConfig.temporal_prediction``) its FSQ's gains and scales are fitted too.
        With a colour token (``TokenizerConfig.colour_token``; it needs a linear VAE, ``ValueError``
        otherwise) the colour path is set to the ``d`` components of largest colour variance outside those of
        the tokens before it (:func:`fit_colour_path`).
    clips: uint8 ``[n,3,T,H,W]`` training clips of the model's frame size, ``1 + tf*m`` frames (n >= 2).
    Returns a :class:`LinearCodeFit`. Deterministic: the same clips give the same weights, bit for bit.

    Raises ValueError for a model without such paths or clips of the wrong shape or dtype.
    """
    config = model.config
    enc = config.encoder
    problem = linear_code_problem(config)
    if problem is not None:
        raise ValueError(problem)
    if clips.dtype != torch.uint8 or clips.dim() != 5 or clips.shape[1] != 3 or len(clips) < 2:
        raise ValueError(f"clips must be uint8 [n>=2,3,T,H,W], got {clips.dtype} {list(clips.shape)}")
    if tuple(clips.shape[3:]) != tuple(config.image_size) or (clips.shape[2] - 1) % config.vae.temporal_factor:
        raise ValueError(f"{config.name} takes {config.image_size[0]}x{config.image_size[1]} clips of 1 + "
                         f"{config.vae.temporal_factor}*m frames; got {list(clips.shape[2:])}")
    dim, residuals = config.fsq.dim, model.fsq.residuals  # FSQ's pairs: sorted by token
    residual_tokens = {token for token, _ in residuals}
    slots = torch.tensor([token * dim + channel for token in range(config.num_registers) if token not in residual_tokens
                          for channel in range(dim)])  # the code slot of each coefficient, in order
    rank, n_codes = enc.linear_path, len(slots)
    encoder, decoder = model.encoder, model.decoder
    if decoder.grid[0] * decoder.grid[1] * rank < n_codes:
        raise ValueError(f"rank {rank} per patch gives {decoder.grid[0] * decoder.grid[1] * rank} values a step, "
                         f"fewer than the {n_codes} coefficients of the code")

    # 1. components of single patches
    size = encoder.linear_patch.in_features
    sum_, outer, total = torch.zeros(size, dtype=torch.float64), torch.zeros(size, size, dtype=torch.float64), 0.0
    for values, weights in _steps(model, clips, batch, progress, "linear code: patch components"):
        w = weights[None, :, None, None].expand(*values.shape[:3], 1)
        flat, wf = values.reshape(-1, size), w.reshape(-1, 1)
        sum_ += (flat * wf).sum(0)
        outer += (flat * wf).T @ flat
        total += float(wf.sum())
    patch_mean, patch_basis, _, patch_variance = _principal(sum_, outer, total, rank)  # [P], [P, r]

    # 2. components of a step's reduced values
    def reduce(values: torch.Tensor) -> torch.Tensor:  # [B,t,L,P] -> [B,t,L*r]
        return ((values - patch_mean) @ patch_basis).flatten(2)

    size = decoder.grid[0] * decoder.grid[1] * rank
    sum_, outer, total = torch.zeros(size, dtype=torch.float64), torch.zeros(size, size, dtype=torch.float64), 0.0
    value_sum, value_square = 0.0, 0.0  # of the unreduced step values, for the variance they hold in all
    for values, weights in _steps(model, clips, batch, progress, "linear code: step components"):
        y = reduce(values)
        w = weights[None, :, None].expand(*y.shape[:2], 1)
        flat, wf = y.reshape(-1, size), w.reshape(-1, 1)
        sum_ += (flat * wf).sum(0)
        outer += (flat * wf).T @ flat
        total += float(wf.sum())
        value_sum = value_sum + (values * weights[None, :, None, None]).sum((0, 1))  # [L,P]
        value_square += float((values.square().sum((2, 3)) * weights).sum())
    step_mean, step_basis, step_var, _ = _principal(sum_, outer, total, n_codes)  # [S], [S, m], [m]
    std = step_var.sqrt().clamp_min(1e-12)
    total_variance = value_square / total - float((value_sum / total).square().sum())
    step_variance = float(step_var.sum()) / max(total_variance, 1e-30)

    # 3. each coefficient's quantiser range (in standard deviations) and the decoder's gain back
    levels = torch.tensor([config.fsq.levels[i % dim] for i in range(n_codes)])
    if config.fsq.bound == "clip":  # a uniform quantiser of +-CLIP_RANGE standard deviations, read back as is
        kappa = torch.full((n_codes,), CLIP_RANGE, dtype=torch.float64)
        gains = kappa.clone()
    else:  # tanh: kappa per level count and each channel's least-squares gain, fitted to the clips' coefficients
        coefficients = []
        for values, _ in _steps(model, clips[:min(len(clips), 1024)], batch, progress, "linear code: gains"):
            coefficients.append(((reduce(values) - step_mean) @ step_basis / std).reshape(-1, n_codes))
        standard = torch.cat(coefficients)  # [rows, m]
        kappa = torch.ones(n_codes, dtype=torch.float64)
        gains = torch.ones(n_codes, dtype=torch.float64)
        best_error = {count: float("inf") for count in set(config.fsq.levels)}
        for k in KAPPAS:
            q = model.fsq.quantize((standard / k).float().view(len(standard), -1, config.fsq.dim)).double()
            q = q.view(len(standard), n_codes)
            g = (standard * q).sum(0) / q.square().sum(0).clamp_min(1e-12)
            error = (standard - g * q).square().mean(0)  # [m]
            for count, best in list(best_error.items()):
                channels = levels == count
                if float(error[channels].mean()) < best:
                    best_error[count] = float(error[channels].mean())
                    kappa[channels], gains[channels] = k, g[channels]

    # 4. the weights (float32), the transformers' contributions zeroed
    scale = 1.0 / (kappa * std)  # [m]
    encoder.linear_patch.weight.copy_(patch_basis.T)
    encoder.linear_patch.bias.copy_(-(patch_mean @ patch_basis))
    encoder.linear_mix.weight.zero_()  # a residual token's own values are not read (FSQ replaces them)
    encoder.linear_mix.bias.zero_()
    encoder.linear_mix.weight[slots] = (step_basis * scale).T.float()
    encoder.linear_mix.bias[slots] = (-(step_mean @ step_basis) * scale).float()
    encoder.to_codes.weight.zero_()
    encoder.to_codes.bias.zero_()
    decoder.linear_mix.weight.zero_()
    decoder.linear_mix.weight[:, slots] = (step_basis * (gains * std)).float()
    gain = model.fsq.residual_gain()
    for token, source in residuals:  # in order of token: a source's columns are set when it is read
        columns = decoder.linear_mix.weight[:, source * dim:(source + 1) * dim]
        decoder.linear_mix.weight[:, token * dim:(token + 1) * dim] = columns * gain
    decoder.linear_mix.bias.copy_(step_mean)
    decoder.linear_out.weight.copy_(patch_basis)
    decoder.linear_out.bias.copy_(patch_mean)
    decoder.head.weight.zero_()
    decoder.head.bias.zero_()
    if config.fsq.temporal_prediction:
        _fit_prediction(model, clips, batch, progress)
    if config.decoder.linear_temporal:
        _fit_temporal(model, clips[:min(len(clips), TEMPORAL_CLIPS)], patch_mean, patch_basis, batch, progress)
    if config.colour_token is not None:
        fit_colour_path(model, clips, batch, progress)

    # 5. the starting model's code at every budget, on (up to) 64 of the clips
    psnr = {}
    sample = clips[:min(len(clips), 64)].float() / 127.5 - 1.0
    latents = model.encode_video(sample)
    codes = model.fsq(model.encoder(latents)).codes
    for k in nested_budgets(config.num_registers):
        linear = decoder.code_path(codes, k)  # [B,t,L,P]
        error = (linear - patchify(latents, enc.patch_size)).square().mean((0, 2, 3))  # per step
        weights = torch.ones(len(error))
        weights[0] = 1.0 / config.vae.temporal_factor
        mse = float((error * weights).sum() / weights.sum())
        psnr[k] = 10 * torch.log10(torch.tensor(4.0 / max(mse, 1e-12))).item()
    return LinearCodeFit(patch_variance, step_variance, tuple(float(kappa[levels == c][0]) for c in
                                                               config.fsq.levels), psnr)

"""The VidTok ``kl_causal_488_16chn`` causal video VAE (the frozen autoencoder of the released models).

A 3-D convolutional KL-VAE factorised into per-frame 2-D residual blocks and per-pixel causal 1-D
residual blocks, with LayerNorm over channels, spatial down/upsampling by 2 at every level but the last
and temporal down/upsampling by 2 at the ``log2(tf)`` levels below the top::

    video [B,3,T,H,W] --(3 copies of frame 0 in front)--> encoder --> moments [B,2C,t,h,w]
    moments -> (mean, logvar) -> latents [B,C,t,h,w]  (mean, or mean + std * noise)
    latents --> decoder --> [B,3,T+3,H,W] --(drop the 3 leading frames)--> video [B,3,T,H,W]

Causality: every temporal operation pads in front only, so latent step i depends on frames ``<= tf*i``.
Parameter names below ``encoder.``/``decoder.`` are those of the reference implementation
(``vae.vidtok.encoder.down.0.block.0.conv1.weight`` there is ``vae.encoder.down.0.block.0.conv1.weight`` here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videoflex.nn import cpu_kernels
from videoflex.nn.fused import DerivedWeights
from videoflex.vae.base import VideoVAE, pad_first_frame
from videoflex.vae.config import VAEConfig

LOGVAR_RANGE = (-30.0, 20.0)


def swish(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)`` in one pass (``F.silu``; equal to the reference's two-kernel form up to rounding).

    Every caller passes a fresh tensor (a norm's output), so without autograd it is overwritten in place
    (no new buffer)."""
    return F.silu(x, inplace=not x.requires_grad)


CHANNELS_LAST = torch.channels_last_3d  # the memory layout inside the VAE (see VidTokVAE)


# ------------------------------------------------------------------------------------------- primitives


class ChannelNorm(nn.Module):
    """Affine LayerNorm over the channel axis (axis 1) at every position of ``[N,C,...]`` (eps 1e-6).

    On a channels-last tensor (the VAE's layout) the channels are the contiguous last axis in memory: the
    norm reads and writes them where they are, with no copy either way. Over fewer than :attr:`PASSES_BELOW`
    channels in float32 on the CPU it runs as whole-tensor passes (mean, centre, norm of the centred values,
    scale and shift, the last three in place without autograd): torch's ``layer_norm`` kernel normalises one
    position at a time, and for such short rows its per-position overhead costs more than the arithmetic (the
    passes take 0.6-0.8 of its time at 16-32 channels and 10^4-10^5 positions). From 64 channels up, and on
    other devices (one fused kernel) or in other dtypes (float32 statistics), it is ``layer_norm``. The same
    two-pass statistics: equal up to float rounding."""

    PASSES_BELOW = 64  # from 64 channels up layer_norm is as fast (0.7-1.4x the passes' time at 64-128 channels)

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)  # [N,...,C]
        if x.device.type != "cpu" or x.dtype != torch.float32 or x.shape[-1] >= self.PASSES_BELOW:
            return self.norm(x).movedim(-1, 1)
        weight, bias = self.norm.weight, self.norm.bias
        centred = x - x.mean(-1, keepdim=True)
        std = (torch.linalg.vector_norm(centred, dim=-1, keepdim=True).square() / x.shape[-1] + self.norm.eps).sqrt()
        if torch.is_grad_enabled() and any(t.requires_grad for t in (x, weight, bias)):
            return (centred / std * weight + bias).movedim(-1, 1)
        return centred.div_(std).mul_(weight).add_(bias).movedim(-1, 1)  # in place: centred is fresh

    def swish(self, x: torch.Tensor, inplace: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
        """``swish(self(x))``, the norm then swish (every use of the norm in the VAE's residual blocks and
        before ``conv_out``): ``[N,C,...] -> same``. On a channels-last float32 CPU tensor without autograd it is
        one pass of the compiled kernel (:func:`videoflex.nn.cpu_kernels.channel_norm_swish`, 1.5-2.6x faster
        than the eager passes at 16-64 channels, ``benchmarks/cpu_kernels.py``) where that is available; else the
        eager path. Equal up to float rounding.

        inplace: ``x`` is a temporary the caller no longer needs; the kernel then writes over it instead of
            into a new buffer (a fresh buffer's pages are faulted in and zeroed by the operating system on first
            touch). The eager path ignores it.
        out: write the result into this tensor shaped like ``x`` (channels-last, not overlapping ``x``) and
            return it; the eager path computes, then copies."""
        target = None if out is None else out.movedim(1, -1)
        fused = cpu_kernels.channel_norm_swish(x.movedim(1, -1), self.norm.weight, self.norm.bias, self.norm.eps,
                                               inplace=inplace, out=target)
        if fused is not None:
            return fused.movedim(-1, 1)
        return swish(self(x)) if out is None else out.copy_(swish(self(x)))


class CausalConv3d(nn.Module):
    """``Conv3d`` with zero padding: ``k_t - s_t`` frames in front (none behind), ``k - s`` pixels split
    around each spatial side. ``[B,Cin,T,H,W] -> [B,Cout,ceil(T/s_t),H/s,W/s]`` (channels-last out).

    With stride 1 and an odd kernel (every convolution of the VAE but the temporal downsampler) it runs as
    per-frame 2-D convolutions, one per temporal tap, ``out[t] = b + sum_j conv2d(x[t - (k-1) + j], W[:, :, j])``,
    each tap accumulated in place over the frames it reaches: the frames in front are zeros and contribute
    nothing, the spatial padding is the 2-D convolution's own, so nothing is padded or copied, and the 2-D
    convolutions take oneDNN's channels-last kernels at any size (torch runs small 3-D ones with a slower
    channels-first kernel). A narrow output (``k * Cout <= NARROW_OUTPUT``: the decoder's RGB ``conv_out``)
    takes all taps in one convolution with the taps as output channels instead, then sums them shifted: the
    convolution computes output channels in SIMD-wide blocks, so ``k * Cout`` channels cost what ``Cout`` do.
    The same sums in another order: equal up to float rounding."""

    NARROW_OUTPUT = 16  # output channels a per-frame convolution computes in one pass (a SIMD block or two)

    def __init__(self, cin: int, cout: int, kernel: int, stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        time_pad = kernel - stride[0]
        space_pad = kernel - stride[1]
        self.padding = (space_pad // 2, space_pad - space_pad // 2, space_pad // 2, space_pad - space_pad // 2,
                        time_pad, 0)
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride)
        self.per_tap = stride == (1, 1, 1) and kernel % 2 == 1
        self.taps = DerivedWeights(taps_first)  # the kernel per temporal tap, contiguous
        self.taps_as_channels = DerivedWeights(taps_as_channels)  # the narrow output's one convolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.per_tap:  # small inputs take torch's channels-first kernel: back to the VAE's layout
            return self.conv(F.pad(x, self.padding)).contiguous(memory_format=CHANNELS_LAST)
        b, t = x.shape[0], x.shape[2]
        weight, bias = self.conv.weight, self.conv.bias
        cout, k = weight.shape[0], weight.shape[2]
        frames, pad = per_frame_view(x), k // 2  # [(B T),Cin,H,W]
        if k * cout <= self.NARROW_OUTPUT:
            taps = F.conv2d(frames, *self.taps_as_channels(weight, bias), padding=pad)
            taps = taps.permute(0, 2, 3, 1).unflatten(0, (b, t)).unflatten(-1, (k, cout))  # [B,T,H,W,k,Cout] (a view)
            out = taps[..., k - 1, :].contiguous()  # the tap on frame t itself, [B,T,H,W,Cout]
            for shift in range(1, min(k, t)):  # the tap `shift` frames back
                out[:, shift:] += taps[:, : t - shift, ..., k - 1 - shift, :]
            return out.movedim(-1, 1)
        taps = self.taps(weight)  # [k,Cout,Cin,k,k]
        out = F.conv2d(frames, taps[k - 1], bias, padding=pad)  # the tap on frame t itself
        out = out.view(b, t, *out.shape[1:])  # [B,T,Cout,H,W] (channels-last memory)
        for shift in range(1, min(k, t)):  # the tap `shift` frames back
            earlier = per_frame_view(x[:, :, : t - shift])
            out[:, shift:] += F.conv2d(earlier, taps[k - 1 - shift], padding=pad).view(b, t - shift, *out.shape[2:])
        return out.transpose(1, 2)


def taps_first(weight: torch.Tensor) -> torch.Tensor:
    """A 3-D kernel ``[Cout,Cin,k,kh,kw]`` as one contiguous 2-D kernel per temporal tap, ``[k,Cout,Cin,kh,kw]``."""
    return weight.movedim(2, 0).contiguous()


def taps_as_channels(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3-D kernel ``[Cout,Cin,k,kh,kw]`` as one 2-D kernel with the taps as output channels ``[(k Cout),Cin,kh,
    kw]``, and the bias on the last tap's channels (the frame's own) ``[(k Cout)]``."""
    cout, k = weight.shape[0], weight.shape[2]
    return weight.movedim(2, 0).flatten(0, 1), F.pad(bias, ((k - 1) * cout, 0))


class CausalConv1d(nn.Module):
    """A ``Conv1d`` over time with ``k - 1`` zero frames in front, at every pixel of ``[B,Cin,T,H,W]`` ->
    ``[B,Cout,T,H,W]`` (channels-last memory in and out).

    The weights are the reference's ``Conv1d`` (``[Cout,Cin,k]``). Instead of regrouping the pixels into
    ``[BHW,Cin,T]`` and back (two copies of the activations per call, as the reference) it runs as one 2-D
    convolution over ``[B,Cin,T,(H W)]`` with a ``(k, 1)`` kernel: on a channels-last video that regrouping is a
    view, and oneDNN's channels-last kernel takes all ``k`` taps in one pass. The convolution's zero padding of
    ``k - 1`` frames at both ends gives output frame ``t`` the input frames ``t-k+1 .. t`` (zeros before the
    first); the ``k - 1`` frames it computes past the end are dropped (a view for one clip, a copy back to the
    VAE's layout for several). The same sums in another order: equal up to float rounding."""

    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__()
        self.time_pad = kernel - 1
        self.conv = nn.Conv1d(cin, cout, kernel)
        self.kernel_2d = DerivedWeights(conv1d_as_conv2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, w = x.shape[2:]
        weight = self.kernel_2d(self.conv.weight)  # [Cout,Cin,k,1]
        out = F.conv2d(x.flatten(3), weight, self.conv.bias, padding=(self.time_pad, 0))  # [B,Cout,T+k-1,H*W]
        return out[:, :, :t].unflatten(3, (h, w)).contiguous(memory_format=CHANNELS_LAST)  # a copy when B > 1


def conv1d_as_conv2d(weight: torch.Tensor) -> torch.Tensor:
    """A ``Conv1d`` kernel ``[Cout,Cin,k]`` as a ``(k, 1)`` 2-D kernel ``[Cout,Cin,k,1]``, channels-last like the
    VAE's activations (else the convolution takes a slower channels-first path)."""
    return weight[..., None].contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------------------- blocks


def per_frame_view(x: torch.Tensor) -> torch.Tensor:
    """``[B,C,T,H,W] -> [(B T),C,H,W]``: a view for a channels-last video of one clip (or whole clips),
    a copy otherwise."""
    return x.transpose(1, 2).flatten(0, 1)


def per_frame(fn: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Apply a 2-D module to every frame of ``[B,C,T,H,W]`` (with ``kwargs``); on the VAE's channels-last videos
    both regroupings are views."""
    b = x.shape[0]
    return rearrange(fn(rearrange(x, "b c t h w -> (b t) c h w"), **kwargs), "(b t) c h w -> b c t h w", b=b)


NEAREST_X2 = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],
                           [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # [phase, input tap, kernel tap]


def nearest_x2_taps(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """Fold a nearest x2 upsampling into the 3 centred taps along ``dim`` of ``weight``: ``[..., 3, ...] ->
    [2, ..., 2, ...]`` (phase in front, 2 taps at ``dim + 1``).

    After nearest x2, output ``2i+p`` of a centred 3-tap kernel reads the upsampled positions ``2i+p-1 ..
    2i+p+1``, i.e. the input positions ``i-1+p`` and ``i+p`` with the kernel taps summed as :data:`NEAREST_X2`
    says: phase 0 reads ``(w0, w1 + w2)`` from ``(i-1, i)``, phase 1 ``(w0 + w1, w2)`` from ``(i, i+1)``."""
    folded = torch.tensordot(weight.movedim(dim, -1), NEAREST_X2.to(weight), dims=([-1], [2]))  # [...,p,tap]
    return folded.movedim(-2, 0).movedim(-1, dim + 1)


def conv2d_add_(residual: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                padding: tuple[int, int]) -> torch.Tensor:
    """``residual += conv2d(x, weight, bias, padding=padding)`` in place: ``[N,Cout,H,W]``, ``[N,Cin,H,W]`` ->
    ``residual`` (which must not share memory with ``x``).

    On channels-last float32 CPU tensors without autograd it is one oneDNN convolution with an in-place sum
    post-op (``torch.ops.mkldnn._convolution_pointwise_``, the operator torch's inductor fuses a convolution and
    an addition into): no new output buffer, no separate pass for the addition; the same sums, so the same bits.
    At 20x32x128x128 (one core of an AMD EPYC) 60 instead of 82 ms, 10,240 fewer page faults (the output buffer
    of 40 MiB is never allocated); at 20x16x64x64 3.7 instead of 4.2 ms. Elsewhere ``residual.add_(conv2d(...))``."""
    if conv_add_fuses(residual, x, weight, bias):
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            residual, x, weight, bias, list(padding), [1, 1], [1, 1], 1, "add", 1.0, None, [], None)
    return residual.add_(F.conv2d(x, weight, bias, padding=padding))


def conv_add_fuses(residual: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether :func:`conv2d_add_` runs as one fused convolution (no autograd involved, so ``residual`` may be
    any temporary, even one an earlier layer read)."""
    return (_CONV_ADD_AVAILABLE and x.device.type == "cpu" and x.dtype == residual.dtype == torch.float32
            and x.is_contiguous(memory_format=torch.channels_last)
            and residual.is_contiguous(memory_format=torch.channels_last)
            and not (torch.is_grad_enabled()
                     and any(t is not None and t.requires_grad for t in (residual, x, weight, bias))))


_CONV_ADD_AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise_")


class SpatialResBlock(nn.Module):
    """Per-frame residual block ``[N,Cin,H,W] -> [N,Cout,H,W]``: two (norm, swish, 3x3 conv); a 1x1
    ``nin_shortcut`` when the width changes."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = ChannelNorm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """inplace: ``x`` is a temporary the caller no longer needs; where the widths agree and no gradient is
        needed, the output is then written into it (:func:`conv2d_add_`: the second convolution adds itself to
        the residual in place)."""
        h = self.conv1(self.norm1.swish(x))
        h = self.norm2.swish(h, inplace=True)
        conv2 = self.conv2.weight, self.conv2.bias
        if self.nin_shortcut is not None:
            return conv2d_add_(self.nin_shortcut(x), h, *conv2, (1, 1))  # into the fresh shortcut
        if inplace and conv_add_fuses(x, h, *conv2):
            return conv2d_add_(x, h, *conv2, (1, 1))
        return self.conv2(h).add_(x)  # in place: the convolution's output is fresh


class TemporalResBlock(nn.Module):
    """Per-pixel causal residual block over time ``[B,C,T,H,W] -> same``: two (norm, swish, causal k=3 conv)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(channels)
        self.conv1 = CausalConv1d(channels, channels)
        self.norm2 = ChannelNorm(channels)
        self.conv2 = CausalConv1d(channels, channels)

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """inplace: ``x`` is a temporary the caller no longer needs; for one clip on the CPU without autograd the
        block then runs in place (:meth:`forward_in_place`)."""
        if inplace and x.shape[0] == 1 and cpu_kernels.load():
            rows = x.flatten(3)  # [B,C,T,H*W]: channels-last for a channels-last video
            if conv_add_fuses(rows, rows, self.conv2.conv.weight, self.conv2.conv.bias):
                return self.forward_in_place(x)
        h = self.conv1(self.norm1.swish(x))
        return self.conv2(self.norm2.swish(h, inplace=True)).add_(x)

    def forward_in_place(self, x: torch.Tensor) -> torch.Tensor:
        """The block written into ``x`` (one clip, channels-last float32 on the CPU, no autograd): both norms write
        into one buffer with the causal convolutions' ``k - 1`` zero frames in front, so that each convolution
        reads it unpadded and computes exactly the ``T`` frames it keeps; the second adds itself to ``x`` in place
        (:func:`conv2d_add_`). Two new buffers instead of four, and no separate addition; the same sums."""
        b, c, t, h, w = x.shape
        pad = self.conv1.time_pad
        buffer = x.new_empty(b, t + pad, h, w, c)  # [B,k-1+T,H,W,C]
        buffer[:, :pad].zero_()
        inner = buffer[:, pad:].movedim(-1, 1)  # [B,C,T,H,W] channels-last (contiguous: one clip)
        padded = buffer.flatten(2, 3).movedim(-1, 1)  # [B,C,k-1+T,H*W] channels-last
        self.norm1.swish(x, out=inner)
        hidden = F.conv2d(padded, self.conv1.kernel_2d(self.conv1.conv.weight), self.conv1.conv.bias)  # [B,C,T,HW]
        self.norm2.swish(hidden, out=inner.flatten(3))
        conv2d_add_(x.flatten(3), padded, self.conv2.kernel_2d(self.conv2.conv.weight), self.conv2.conv.bias, (0, 0))
        return x


class CausalResBlock3D(nn.Module):
    """Residual block of two causal 3x3x3 convolutions (middle of the VAE): ``[B,C,T,H,W] -> same``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(channels)
        self.conv1 = CausalConv3d(channels, channels, 3)
        self.norm2 = ChannelNorm(channels)
        self.conv2 = CausalConv3d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.norm1.swish(x))
        return self.conv2(self.norm2.swish(h, inplace=True)).add_(x)


class FrameAttention(nn.Module):
    """Single-head self-attention among the pixels of each frame, residual: ``[B,C,T,H,W] -> same``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = ChannelNorm(channels)
        self.q = CausalConv3d(channels, channels, 1)
        self.k = CausalConv3d(channels, channels, 1)
        self.v = CausalConv3d(channels, channels, 1)
        self.proj_out = CausalConv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = per_frame(self.norm, x)
        q, k, v = (rearrange(f(h), "b c t h w -> b t (h w) c").contiguous() for f in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # scale C ** -0.5
        out = rearrange(out, "b t (h w) c -> b c t h w", h=x.shape[3], w=x.shape[4])
        return x + self.proj_out(out)


class MidBlock(nn.Module):
    """``block_1 -> attn_1 -> block_2`` at the lowest resolution: ``[B,C,t,h,w] -> same``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = CausalResBlock3D(channels)
        self.attn_1 = FrameAttention(channels)
        self.block_2 = CausalResBlock3D(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


def subpixel_kernel(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest x2 then the 3x3 convolution ``weight [C,C,3,3]`` as one 2x2 convolution on the input grid with
    the four phases' folded kernels as output channels: ``[(p q C),C,2,2]`` and the bias ``[(4 C)]``."""
    kernel = nearest_x2_taps(nearest_x2_taps(weight, 2), 4)  # [q,p,C,C,2,2]
    return kernel.transpose(0, 1).flatten(0, 2), bias.repeat(4)


class Downsample2D(nn.Module):
    """Per-frame 3x3 stride-2 conv after one zero row/column on the bottom/right: ``[N,C,H,W] -> [N,C,H/2,W/2]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    """Per-frame nearest x2 then 3x3 conv: ``[N,C,H,W] -> [N,C,2H,2W]`` (channels-last in and out).

    Runs as a sub-pixel convolution on the input grid (:func:`nearest_x2_taps`): output pixel ``(2i+p, 2j+q)``
    is a 2x2 convolution of the input around ``(i, j)`` with phase ``(p, q)``'s folded kernel. One 2x2
    convolution with the four phases' kernels as ``4C`` output channels (padding 1: the phases' windows are
    shifted by one pixel) computes them all with 16 instead of 36 multiply-adds per input pixel and channel
    pair, and no upsampled copy of the input; the phases are then interleaved in one copy."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.subpixel = DerivedWeights(subpixel_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = F.conv2d(x, *self.subpixel(self.conv.weight, self.conv.bias), padding=1)
        y = y.permute(0, 2, 3, 1).view(n, h + 1, w + 1, 2, 2, c)  # [N,H+1,W+1,p,q,C] (a view: channels-last)
        out = x.new_empty(n, h, 2, w, 2, c)  # [N,H,p,W,q,C] = [N,2H,2W,C]
        for p in (0, 1):
            for q in (0, 1):
                out[:, :, p, :, q] = y[:, p : p + h, q : q + w, p, q]
        return out.view(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


class TimeDownsample2x(nn.Module):
    """Causal temporal /2: ``a * avgpool3(1 zero frame in front) + (1 - a) * causal stride-2 conv``,
    ``a = sigmoid(mix_factor)``. ``[B,C,T,H,W] -> [B,C,ceil(T/2),H,W]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3, stride=(2, 1, 1))
        self.mix_factor = nn.Parameter(torch.tensor([2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.mix_factor)
        # in float32: the CPU has no bfloat16 avg_pool3d
        pooled = F.avg_pool3d(F.pad(x.float(), (0, 0, 0, 0, 1, 0)), (3, 1, 1), stride=(2, 1, 1)).to(x.dtype)
        return torch.lerp(self.conv(x), pooled.contiguous(memory_format=CHANNELS_LAST), a)  # a*pooled + (1-a)*conv


class TimeUpsample2x(nn.Module):
    """Temporal x2: every frame repeated, then ``a * x + (1 - a) * causal conv(x)``, ``a = sigmoid(mix_factor)``.
    ``[B,C,T,H,W] -> [B,C,2T,H,W]`` (channels-last in and out).

    Runs on the frames as they come: with the repeated frames, the causal 3x3x3 convolution's temporal taps
    ``w0, w1, w2`` read frames ``(i-1, i-1, i)`` for output frame ``2i`` and ``(i-1, i, i)`` for ``2i+1``, so
    the three per-frame 3x3 convolutions ``y_j = conv2d(x, w_j)`` of every input frame (one convolution with the
    taps as ``3C`` output channels) give both: ``out[2i] = y2[i] + y1[i-1] + y0[i-1]`` and ``out[2i+1] = y2[i] +
    y1[i] + y0[i-1]``. The mix is folded in (the kernels scaled by ``1 - a``, ``a`` times the identity added to
    ``w2``). Half the multiply-adds of convolving the repeated frames, no repeated copy and no separate mix; the
    sums are written straight into the interleaved output (in one pass by the compiled kernel
    :func:`videoflex.nn.cpu_kernels.time_upsample_sums` where it applies)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3)
        self.mix_factor = nn.Parameter(torch.tensor([2.0]))
        self.mixed_taps = DerivedWeights(mixed_taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        taps, bias = self.mixed_taps(self.conv.conv.weight, self.conv.conv.bias, self.mix_factor)
        y = F.conv2d(per_frame_view(x), taps, bias, padding=1)  # [(B T),(3 C),H,W] channels-last
        y = y.permute(0, 2, 3, 1)  # [(B T),H,W,(3 C)] (a view)
        summed = cpu_kernels.time_upsample_sums(y.reshape(b * t, h * w, 3, c), b)  # one pass where compiled
        if summed is not None:
            return summed.view(b, 2 * t, h, w, c).movedim(-1, 1)
        y0, y1, y2 = y.unflatten(0, (b, t)).unflatten(-1, (3, c)).unbind(-2)  # [B,T,H,W,C] views
        out = y2[:, :, None].expand(b, t, 2, h, w, c).contiguous()  # [B,T,p,H,W,C] = channels-last [B,C,2T,H,W]
        out[:, :, 1] += y1
        if t > 1:  # the taps on the frame before (none before the first)
            out[:, 1:, 0] += y1[:, :-1]
            out[:, 1:] += y0[:, :-1, None]
        return out.view(b, 2 * t, h, w, c).movedim(-1, 1)


def mixed_taps(weight: torch.Tensor, bias: torch.Tensor, mix_factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`TimeUpsample2x`'s kernel ``[C,C,3,3,3]`` with the mix ``a = sigmoid(mix_factor)`` folded in, the
    three temporal taps as output channels: ``[(3 C),C,3,3]`` (``(1 - a) w0, (1 - a) w1, (1 - a) w2 + a I``) and
    the bias ``[(3 C)]`` (``(1 - a) b`` on ``w2``'s channels, zero on the others)."""
    c = weight.shape[0]
    a = torch.sigmoid(mix_factor)
    taps = weight.movedim(2, 0) * (1 - a)  # [3,Cout,Cin,3,3]: w0, w1, w2
    taps[2, :, :, 1, 1] += a * torch.eye(c, dtype=taps.dtype, device=taps.device)  # + a * x (centre pixel)
    return taps.flatten(0, 1), F.pad(bias * (1 - a), (2 * c, 0))  # the bias on w2 (the frame's own tap) only


def spatial_temporal(x: torch.Tensor, spatial: SpatialResBlock, temporal: TemporalResBlock,
                     inplace: bool = False) -> torch.Tensor:
    """A spatial block on every frame, then a temporal block on every pixel: ``[B,Cin,T,H,W] -> [B,Cout,T,H,W]``.
    inplace: ``x`` is a temporary the caller no longer needs (see :meth:`SpatialResBlock.forward`)."""
    return temporal(per_frame(spatial, x, inplace=inplace), inplace=inplace)


class SpatialLevel(nn.Module):
    """One resolution level: ``block`` (spatial residual blocks) and an optional ``downsample``/``upsample``."""

    def __init__(self, blocks: list[SpatialResBlock], downsample: Downsample2D | None = None,
                 upsample: Upsample2D | None = None) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.downsample = downsample
        self.upsample = upsample


class TemporalLevel(nn.Module):
    """One resolution level: ``block`` (temporal residual blocks) and an optional temporal resampler."""

    def __init__(self, blocks: list[TemporalResBlock], downsample: TimeDownsample2x | None = None,
                 upsample: TimeUpsample2x | None = None) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.downsample = downsample
        self.upsample = upsample


def _temporal_levels(config: VAEConfig) -> set[int]:
    """Levels that resample time: the ``log2(tf)`` levels just below the top (``{1, 2}`` for 4 levels, tf 4)."""
    levels = len(config.channel_mult)
    count = int(math.log2(config.temporal_factor))
    if count > levels - 1:
        raise ValueError(f"VidTokVAE: temporal_factor {config.temporal_factor} needs {count} downsampling levels; "
                         f"channel_mult {config.channel_mult} has {levels - 1}")
    return set(range(levels - 2, levels - 2 - count, -1))


# ------------------------------------------------------------------------------------------- encoder, decoder


class VidTokEncoder(nn.Module):
    """Padded video ``[B,3,T',H,W]`` (T' divisible by tf) -> moments ``[B,2C,T'/tf,H/sf,W/sf]``."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        ch, mult = config.base_channels, config.channel_mult
        levels, temporal = len(mult), _temporal_levels(config)
        self.conv_in = CausalConv3d(3, ch, 3)
        self.down, self.down_temporal = nn.ModuleList(), nn.ModuleList()
        cin = ch
        for i, m in enumerate(mult):
            cout = ch * m
            blocks = [SpatialResBlock(cin if j == 0 else cout, cout) for j in range(config.num_res_blocks)]
            self.down.append(SpatialLevel(blocks, downsample=Downsample2D(cout) if i < levels - 1 else None))
            self.down_temporal.append(TemporalLevel([TemporalResBlock(cout) for _ in range(config.num_res_blocks)],
                                                    downsample=TimeDownsample2x(cout) if i in temporal else None))
            cin = cout
        self.mid = MidBlock(cin)
        self.norm_out = ChannelNorm(cin)
        self.conv_out = CausalConv3d(cin, 2 * config.latent_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for spatial, temporal in zip(self.down, self.down_temporal):
            for s_block, t_block in zip(spatial.block, temporal.block):
                x = spatial_temporal(x, s_block, t_block, inplace=True)  # x is ours
            if spatial.downsample is not None:
                x = per_frame(spatial.downsample, x)
            if temporal.downsample is not None:
                x = temporal.downsample(x)
        x = self.mid(x)
        return self.conv_out(self.norm_out.swish(x, inplace=True))


class VidTokDecoder(nn.Module):
    """Latents ``[B,C,t,h,w]`` -> video ``[B,3,tf*t,h*sf,w*sf]`` (before dropping the padded frames).

    ``up[i]``/``up_temporal[i]`` hold level i; they run from the lowest resolution (last level) up.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        ch, mult = config.base_channels, config.channel_mult
        temporal = _temporal_levels(config)
        cin = ch * mult[-1]
        self.conv_in = CausalConv3d(config.latent_channels, cin, 3)
        self.mid = MidBlock(cin)
        up, up_temporal = [], []
        for i in reversed(range(len(mult))):
            cout = ch * mult[i]
            blocks = [SpatialResBlock(cin if j == 0 else cout, cout) for j in range(config.num_res_blocks + 1)]
            up.append(SpatialLevel(blocks, upsample=Upsample2D(cout) if i > 0 else None))
            up_temporal.append(TemporalLevel([TemporalResBlock(cout) for _ in range(config.num_res_blocks + 1)],
                                             upsample=TimeUpsample2x(cout) if i in temporal else None))
            cin = cout
        self.up = nn.ModuleList(reversed(up))
        self.up_temporal = nn.ModuleList(reversed(up_temporal))
        self.norm_out = ChannelNorm(cin)
        self.conv_out = CausalConv3d(cin, 3, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(z))
        for spatial, temporal in zip(reversed(self.up), reversed(self.up_temporal)):
            for s_block, t_block in zip(spatial.block, temporal.block):
                x = spatial_temporal(x, s_block, t_block, inplace=True)  # x is ours
            if spatial.upsample is not None:
                x = per_frame(spatial.upsample, x)
            if temporal.upsample is not None:
                x = temporal.upsample(x)
        return self.conv_out(self.norm_out.swish(x, inplace=True))


# ------------------------------------------------------------------------------------------- the VAE


@dataclass(frozen=True)
class DiagonalGaussian:
    """The posterior ``N(mean, exp(logvar))`` over latents, each ``[B,C,t,h,w]`` (logvar clamped to [-30, 20])."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """``mean + std * noise``; the float32 noise comes from ``generator`` (on its device) or, when None,
        from the global CPU RNG (as the reference implementation draws it). The noise is drawn one batch
        element after another, so a batch split into parts (in order) draws the numbers of the whole batch."""
        device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.stack([torch.randn(self.mean.shape[1:], generator=generator, device=device,
                                         dtype=torch.float32) for _ in range(self.mean.shape[0])])
        return self.mean + torch.exp(0.5 * self.logvar) * noise.to(self.mean.device, self.mean.dtype)


class VidTokVAE(VideoVAE):
    """VidTok causal KL-VAE (``kl_causal_488_16chn`` with the default config): ``[B,3,1+tf*m,H,W] <->
    [B,C,1+m,H/sf,W/sf]``. Frame 0 is repeated ``tf - 1`` times in front before encoding so that latent step 0
    holds frame 0 alone; decoding drops those frames again."""

    def __init__(self, config: VAEConfig) -> None:
        if config.kind != "vidtok":
            raise ValueError(f"VidTokVAE needs a VAEConfig of kind 'vidtok', got {config.kind!r}")
        super().__init__(config)
        self.encoder = VidTokEncoder(config)
        self.decoder = VidTokDecoder(config)

    def posterior(self, video: torch.Tensor) -> DiagonalGaussian:
        """``[B,3,T,H,W]`` in [-1,1], ``T = 1 + tf*m`` -> the posterior over latents ``[B,C,1+m,H/sf,W/sf]``."""
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"VidTokVAE encodes videos [B, 3, T, H, W], got {tuple(video.shape)}")
        self.check_num_frames(video.shape[2])
        sf = self.spatial_factor
        if video.shape[3] % sf or video.shape[4] % sf:
            raise ValueError(f"VidTokVAE: height and width must be divisible by {sf}, got {tuple(video.shape[3:])}")
        moments = self.encoder(pad_first_frame(video, self.temporal_factor - 1).contiguous(memory_format=CHANNELS_LAST))
        moments = moments.contiguous()
        mean, logvar = moments.chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar.clamp(*LOGVAR_RANGE))

    def encode(self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        posterior = self.posterior(video)
        return posterior.sample(generator) if sample else posterior.mean

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.dim() != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"VidTokVAE decodes latents [B, {self.latent_channels}, t, h, w], "
                             f"got {tuple(latents.shape)}")
        video = self.decoder(latents.contiguous(memory_format=CHANNELS_LAST))
        return video[:, :, self.temporal_factor - 1:].contiguous()

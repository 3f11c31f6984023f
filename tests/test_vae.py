"""The video autoencoders: VidTok causal VAE (small widths) and the space-to-depth VAE."""

import pytest
import torch
import torch.nn.functional as F

from videoflex.vae import VAEConfig, build_vae, vidtok
from videoflex.vae.space_to_depth import SpaceToDepthVAE
from videoflex.vae.vidtok import VidTokVAE

SMALL = VAEConfig(kind="vidtok", latent_channels=16, temporal_factor=4, spatial_factor=8, base_channels=16,
                  channel_mult=(1, 2, 4, 4), num_res_blocks=2)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clip(frames: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    return torch.rand(1, 3, frames, size, size, generator=gen(seed)) * 2 - 1


@pytest.fixture(scope="module")
def vae() -> VidTokVAE:
    torch.manual_seed(0)
    model = build_vae(SMALL).eval()
    with torch.no_grad():  # the default init leaves the mixing factors equal everywhere; make them differ
        for name, p in model.named_parameters():
            if name.endswith("mix_factor"):
                p.copy_(torch.randn(1, generator=gen(len(name))))
    return model


def test_build_vae_picks_the_class(vae):
    assert isinstance(vae, VidTokVAE)
    assert "encoder.down.0.block.0.conv1.weight" in vae.state_dict()
    assert "decoder.up_temporal.1.upsample.mix_factor" in vae.state_dict()


@pytest.mark.parametrize("frames", [1, 5, 17])
def test_shapes(vae, frames):
    with torch.no_grad():
        latents = vae.encode(clip(frames))
        assert latents.shape == (1, 16, 1 + (frames - 1) // 4, 4, 4)
        assert vae.decode(latents).shape == (1, 3, frames, 32, 32)


def test_encoder_is_causal(vae):
    video = clip(17)
    with torch.no_grad():
        base = vae.encode(video)
        for i in range(4):  # latent step i covers frames <= 4i
            changed = video.clone()
            changed[:, :, 4 * i + 1:] = clip(16 - 4 * i, seed=10 + i)
            latents = vae.encode(changed)
            torch.testing.assert_close(latents[:, :, : i + 1], base[:, :, : i + 1], rtol=0, atol=1e-6)
            assert (latents[:, :, i + 1] - base[:, :, i + 1]).abs().max() > 1e-3


def test_decoder_is_causal(vae):
    with torch.no_grad():
        latents = vae.encode(clip(17))
        base = vae.decode(latents)
        changed = latents.clone()
        changed[:, :, 3:] += 1.0
        out = vae.decode(changed)
    torch.testing.assert_close(out[:, :, :9], base[:, :, :9], rtol=0, atol=1e-6)  # frames of steps 0..2
    assert (out[:, :, 9:] - base[:, :, 9:]).abs().max() > 1e-3


def test_mean_and_sampled_encode(vae):
    video = clip(5)
    with torch.no_grad():
        mean = vae.encode(video)
        a = vae.encode(video, sample=True, generator=gen(1))
        b = vae.encode(video, sample=True, generator=gen(1))
        c = vae.encode(video, sample=True, generator=gen(2))
        torch.manual_seed(5)
        d = vae.encode(video, sample=True)
        torch.manual_seed(5)
        e = vae.encode(video, sample=True)
        posterior = vae.posterior(video)
        again = vae.encode(video)
    assert torch.equal(mean, again)
    # with autograd the eager path runs (the compiled CPU kernels have no backward): equal up to rounding
    torch.testing.assert_close(vae.encode(video), mean, rtol=1e-5, atol=1e-5)
    assert torch.equal(a, b) and torch.equal(d, e)
    assert not torch.equal(a, c) and not torch.equal(a, mean)
    # the sample is mean + std * noise with noise ~ N(0, 1)
    noise = (a - posterior.mean) / torch.exp(0.5 * posterior.logvar)
    torch.testing.assert_close(noise, torch.randn(mean.shape, generator=gen(1)), rtol=1e-4, atol=1e-4)


def test_global_rng_draw_matches_plain_randn(vae):
    """With no generator the noise is ``torch.randn(shape)`` from the global CPU RNG (the reference's draw)."""
    video = clip(5)
    with torch.no_grad():
        posterior = vae.posterior(video)
        torch.manual_seed(11)
        sampled = vae.encode(video, sample=True)
    torch.manual_seed(11)
    expected = posterior.mean + torch.exp(0.5 * posterior.logvar) * torch.randn(posterior.mean.shape)
    assert torch.equal(sampled, expected)


@pytest.mark.parametrize("frames", [0, 2, 4, 16, 18])
def test_bad_frame_counts_raise(vae, frames):
    with pytest.raises(ValueError, match="1 \\+ 4\\*m"):
        vae.encode(torch.zeros(1, 3, frames, 32, 32))
    s2d = SpaceToDepthVAE(VAEConfig(kind="space_to_depth", latent_channels=192, temporal_factor=4, spatial_factor=4))
    with pytest.raises(ValueError, match="1 \\+ 4\\*m"):
        s2d.encode(torch.zeros(1, 3, frames, 32, 32))


def test_bad_shapes_raise(vae):
    with pytest.raises(ValueError, match="divisible by 8"):
        vae.encode(torch.zeros(1, 3, 5, 36, 32))
    with pytest.raises(ValueError, match="latents"):
        vae.decode(torch.zeros(1, 8, 2, 4, 4))


def test_too_few_levels_for_the_temporal_factor():
    with pytest.raises(ValueError, match="temporal_factor 4"):
        VidTokVAE(VAEConfig(kind="vidtok", spatial_factor=2, base_channels=8, channel_mult=(1, 2)))


@pytest.mark.parametrize("frames", [1, 5, 17])
def test_space_to_depth_is_an_exact_inverse(frames):
    s2d = build_vae(VAEConfig(kind="space_to_depth", latent_channels=192, temporal_factor=4, spatial_factor=4))
    video = clip(frames)
    latents = s2d.encode(video)
    assert latents.shape == (1, 192, 1 + (frames - 1) // 4, 8, 8)
    assert torch.equal(s2d.decode(latents), video)


# ------------------------------------------------------------------ the layers against their plain definitions


def video_cl(channels: int, frames: int, batch: int = 2, size: int = 8, seed: int = 3) -> torch.Tensor:
    """A channels-last video ``[B,C,T,H,W]`` (the VAE's layout)."""
    return torch.randn(batch, channels, frames, size, size, generator=gen(seed)).contiguous(
        memory_format=torch.channels_last_3d)


def randomised(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every parameter drawn at random (biases and norm affines included)."""
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen(100 + i)) * (0.3 if p.dim() > 1 else 1.0))
    return module


def causal_conv3d(x: torch.Tensor, conv: torch.nn.Conv3d) -> torch.Tensor:
    """The definition: zero frames in front, zero pixels around, ``conv3d``."""
    k = conv.kernel_size[0]
    return F.conv3d(F.pad(x.contiguous(), (k // 2, k // 2, k // 2, k // 2, k - 1, 0)), conv.weight, conv.bias)


@pytest.mark.parametrize(("cin", "cout", "frames"), [(8, 8, 5), (8, 3, 5), (3, 8, 4), (8, 3, 1), (8, 8, 2)])
def test_causal_conv3d_matches_padded_conv3d(cin, cout, frames):
    """Per-tap 2-D convolutions, and all taps as output channels for a narrow output (``cout`` 3)."""
    layer = randomised(vidtok.CausalConv3d(cin, cout, 3))
    x = video_cl(cin, frames)
    with torch.no_grad():
        out = layer(x)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, causal_conv3d(x, layer.conv), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("frames", [1, 2, 5])
def test_causal_conv1d_matches_per_pixel_conv1d(frames):
    layer = randomised(vidtok.CausalConv1d(8, 8))
    x = video_cl(8, frames)
    b, c, t, h, w = x.shape
    pixels = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, t)  # [BHW,C,T]
    expected = F.conv1d(F.pad(pixels, (2, 0)), layer.conv.weight, layer.conv.bias)
    expected = expected.view(b, h, w, c, t).permute(0, 3, 4, 1, 2)
    with torch.no_grad():
        out = layer(x)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_upsample2d_matches_nearest_then_conv():
    layer = randomised(vidtok.Upsample2D(8))
    frames = vidtok.per_frame_view(video_cl(8, 3))  # [(B T),C,H,W] channels-last
    expected = layer.conv(F.interpolate(frames.contiguous(), scale_factor=2.0, mode="nearest"))
    with torch.no_grad():
        out = layer(frames)
    assert out.shape == (6, 8, 16, 16) and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("frames", [1, 2, 5])
def test_time_upsample_matches_repeat_conv_mix(frames):
    layer = randomised(vidtok.TimeUpsample2x(8))
    x = video_cl(8, frames)
    repeated = x.repeat_interleave(2, dim=2)
    a = torch.sigmoid(layer.mix_factor)
    expected = a * repeated + (1 - a) * causal_conv3d(repeated, layer.conv.conv)
    with torch.no_grad():
        out = layer(x)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    x.requires_grad_(True)
    layer(x).square().sum().backward()  # autograd reaches the input and the weights
    assert x.grad is not None and layer.conv.conv.weight.grad is not None and layer.mix_factor.grad is not None


def test_channel_norm_matches_layer_norm_with_and_without_autograd():
    layer = randomised(vidtok.ChannelNorm(8))
    x = video_cl(8, 3) * 3 + 1
    expected = F.layer_norm(x.movedim(1, -1), (8,), layer.norm.weight, layer.norm.bias, 1e-6).movedim(-1, 1)
    with torch.no_grad():
        fast = layer(x)
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-5)
    x.requires_grad_(True)
    tracked = layer(x)
    assert torch.equal(tracked, fast)  # the same passes, in place or not
    tracked.square().sum().backward()
    assert x.grad is not None and layer.norm.weight.grad is not None


def test_derived_kernels_follow_weight_changes(vae):
    """The rearranged kernels the VAE keeps between calls (per-tap, sub-pixel, mixed) are remade when the
    weights change (load_state_dict, in-place updates) and never used where gradients must reach the weights."""
    import copy

    latents = torch.randn(1, 16, 3, 4, 4, generator=gen(3))
    other = copy.deepcopy(vae)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(0.9).add_(0.01)
        first = vae.decode(latents)
        changed = copy.deepcopy(vae)
        changed.load_state_dict(other.state_dict())
        torch.testing.assert_close(changed.decode(latents), other.decode(latents), atol=0, rtol=0)
        assert (changed.decode(latents) - first).abs().max() > 1e-3
        torch.testing.assert_close(vae.decode(latents), first, atol=0, rtol=0)
    trained = copy.deepcopy(vae).train()
    trained.decode(latents).square().mean().backward()
    for name in ("decoder.up_temporal.1.upsample.mix_factor", "decoder.up.1.upsample.conv.weight",
                 "decoder.mid.block_1.conv1.conv.weight", "decoder.up_temporal.0.block.0.conv1.conv.weight"):
        assert trained.get_parameter(name).grad.abs().sum() > 0, name


@pytest.mark.parametrize("batch", [1, 2])
def test_residual_blocks_in_place_equal_the_plain_blocks(batch):
    """With inplace=True a block may write its output into its input (the decoder's temporaries): the same
    values as without; under autograd the input is left alone."""
    torch.manual_seed(0)
    spatial, temporal = vidtok.SpatialResBlock(16, 16).eval(), vidtok.TemporalResBlock(16).eval()
    for module in (spatial, temporal):
        for p in module.parameters():
            p.data.normal_(0, 0.3)
    video = torch.randn(batch, 16, 5, 6, 7).contiguous(memory_format=vidtok.CHANNELS_LAST)
    frames = video.transpose(1, 2).flatten(0, 1)  # [(B T),C,H,W] channels-last
    with torch.no_grad():
        for block, x in ((spatial, frames), (temporal, video)):
            expected = block(x)
            scratch = x.clone(memory_format=torch.preserve_format)
            got = block(scratch, inplace=True)
            torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
            if batch == 1:  # one clip on the CPU: the output is the input's memory
                assert got.data_ptr() == scratch.data_ptr()
    x = frames.clone().requires_grad_()
    before = x.detach().clone()
    spatial(x, inplace=True).sum().backward()
    assert torch.equal(x.detach(), before) and x.grad is not None

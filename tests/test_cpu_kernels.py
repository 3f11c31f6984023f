"""The compiled CPU kernels: equal to the eager path up to rounding, deterministic under any thread count, used
only where they apply, and a failed build falls back to the eager path with a warning."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.nn.functional as F

from videoflex.nn import cpu_kernels
from videoflex.vae.vidtok import CHANNELS_LAST, ChannelNorm, TimeUpsample2x, swish


@pytest.fixture(scope="module")
def kernels():
    if not cpu_kernels.load():
        pytest.skip("the CPU kernels could not be built here (no C++ compiler or ninja)")


@pytest.fixture
def eager_only(monkeypatch):
    monkeypatch.setenv(cpu_kernels.ENV_SWITCH, "0")


def eager_norm_swish(x, weight, bias, eps=1e-6):
    return F.silu(F.layer_norm(x, (x.shape[-1],), weight, bias, eps))


@pytest.mark.parametrize("shape", [(7, 16), (3, 5, 5, 32), (2, 9, 64), (4, 48), (33, 3), (2, 1, 128)])
def test_channel_norm_swish_equals_eager(kernels, shape):
    torch.manual_seed(0)
    x = torch.randn(shape) * 3 + 1
    weight, bias = torch.rand(shape[-1]) + 0.5, torch.randn(shape[-1])
    out = cpu_kernels.channel_norm_swish(x, weight, bias, 1e-6)
    assert out is not None and out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, eager_norm_swish(x, weight, bias), atol=3e-6, rtol=1e-5)


def test_channel_norm_swish_in_place_overwrites_its_input(kernels):
    torch.manual_seed(0)
    x = torch.randn(5, 7, 32)
    weight, bias = torch.rand(32) + 0.5, torch.randn(32)
    expected = cpu_kernels.channel_norm_swish(x, weight, bias, 1e-6)
    out = cpu_kernels.channel_norm_swish(x, weight, bias, 1e-6, inplace=True)
    assert out.data_ptr() == x.data_ptr()
    assert torch.equal(x, expected)


def test_channel_norm_swish_extremes_and_nan(kernels):
    """Large activations saturate swish as the eager path does; a NaN or infinity in a row gives NaN for the
    row (as layer_norm), never a finite made-up value."""
    x = torch.tensor([[80.0, -80.0] + [0.0] * 14, [1e4] + [-1e4] * 15, [float("nan")] + [1.0] * 15,
                      [float("inf")] + [1.0] * 15])
    weight, bias = torch.full((16,), 50.0), torch.zeros(16)
    out = cpu_kernels.channel_norm_swish(x, weight, bias, 1e-6)
    torch.testing.assert_close(out[:2], eager_norm_swish(x[:2], weight, bias), atol=1e-4, rtol=1e-5)
    assert out[2:].isnan().all()
    assert eager_norm_swish(x[2:], weight, bias).isnan().all()


def test_results_do_not_depend_on_the_thread_count(kernels):
    torch.manual_seed(0)
    x = torch.randn(20, 32, 32, 16)
    y = torch.randn(8, 1024, 3, 16)
    weight, bias = torch.rand(16), torch.randn(16)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu_kernels.channel_norm_swish(x, weight, bias, 1e-6), cpu_kernels.time_upsample_sums(y, 2)
        torch.set_num_threads(max(2, threads))
        more = cpu_kernels.channel_norm_swish(x, weight, bias, 1e-6), cpu_kernels.time_upsample_sums(y, 2)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, more))


def test_kernels_apply_only_where_they_can(kernels):
    x, weight, bias = torch.randn(4, 16), torch.ones(16), torch.zeros(16)
    assert cpu_kernels.channel_norm_swish(x.double(), weight.double(), bias.double(), 1e-6) is None
    assert cpu_kernels.channel_norm_swish(torch.randn(16, 4).t(), weight, bias, 1e-6) is None  # not contiguous
    assert cpu_kernels.channel_norm_swish(x, weight.requires_grad_(), bias, 1e-6) is None  # autograd needs eager
    with torch.no_grad():
        assert cpu_kernels.channel_norm_swish(x, weight, bias, 1e-6) is not None
    assert cpu_kernels.time_upsample_sums(torch.randn(2, 4, 3, 8).bfloat16(), 1) is None


def test_switched_off_by_the_environment(eager_only):
    assert not cpu_kernels.load()
    assert cpu_kernels.channel_norm_swish(torch.randn(4, 16), torch.ones(16), torch.zeros(16), 1e-6) is None


@pytest.mark.parametrize("shape", [(1, 16, 5, 8, 9), (2, 32, 3, 4, 4), (1, 8, 1, 3, 3)])
def test_vae_layers_with_and_without_kernels(kernels, monkeypatch, shape):
    """ChannelNorm.swish and TimeUpsample2x give the eager path's results (the upsampler's sums are the same
    additions in the same order) and keep the VAE's channels-last layout."""
    torch.manual_seed(0)
    c = shape[1]
    norm, upsample = ChannelNorm(c), TimeUpsample2x(c)
    norm.norm.weight.data.uniform_(0.5, 1.5)
    norm.norm.bias.data.normal_()
    upsample.mix_factor.data.fill_(0.3)
    x = torch.randn(shape).contiguous(memory_format=CHANNELS_LAST)
    with torch.inference_mode():
        fused = norm.swish(x), upsample(x)
        monkeypatch.setenv(cpu_kernels.ENV_SWITCH, "0")
        eager = swish(norm(x)), upsample(x)
    torch.testing.assert_close(fused[0], eager[0], atol=3e-6, rtol=1e-5)
    torch.testing.assert_close(fused[1], eager[1], atol=1e-6, rtol=1e-6)
    assert fused[1].shape == (shape[0], c, 2 * shape[2], *shape[3:])
    assert all(t.is_contiguous(memory_format=CHANNELS_LAST) for t in fused)


def test_a_failed_build_warns_once_and_the_eager_path_runs(monkeypatch):
    from torch.utils import cpp_extension

    def broken(*args, **kwargs):
        raise RuntimeError("Error building extension 'videoflex_cpu_kernels': g++ not found")

    monkeypatch.setattr(cpp_extension, "load", broken)
    cpu_kernels._build.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="CPU kernels are not available.*g\\+\\+ not found"):
            assert not cpu_kernels.load()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per process: no second warning
            assert not cpu_kernels.load()
            norm = ChannelNorm(16)
            x = torch.randn(1, 16, 2, 4, 4).contiguous(memory_format=CHANNELS_LAST)
            with torch.no_grad():
                torch.testing.assert_close(norm.swish(x), swish(norm(x)), atol=0, rtol=0)
    finally:
        cpu_kernels._build.cache_clear()


def test_build_name_follows_source_flags_and_cpu(monkeypatch):
    """A changed source, other flags or another CPU build their own copy (never a stale or foreign one)."""
    name = cpu_kernels.build_name()
    assert name.startswith("videoflex_cpu_kernels_") and name == cpu_kernels.build_name()
    assert cpu_kernels.build_directory().name == name
    monkeypatch.setattr(cpu_kernels, "_cpu_signature", lambda: "x86_64|flags: sse2")
    other_cpu = cpu_kernels.build_name()
    monkeypatch.setattr(cpu_kernels, "FLAGS", (*cpu_kernels.FLAGS, "-DOTHER"))
    assert len({name, other_cpu, cpu_kernels.build_name()}) == 3


def test_the_ninja_wheel_is_found_without_an_activated_environment(monkeypatch):
    """torch's builder runs `ninja` from PATH; a virtual environment's is not on it unless activated."""
    import shutil

    ninja = pytest.importorskip("ninja")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert shutil.which("ninja") is None
    cpu_kernels._ninja_on_path()
    assert shutil.which("ninja") is not None and ninja.BIN_DIR in os.environ["PATH"]


def test_loading_the_kernels_keeps_subnormal_floats(kernels):
    """The kernels are compiled with -ffast-math, which must not reach the link: a library linked with GCC's
    crtfastmath would switch the whole process to flush-to-zero."""
    tiny = torch.tensor([1e-40])  # subnormal in float32
    assert (tiny * 1.0).item() != 0.0

"""``videoflex eval recon``: the token-count sweep writes its JSON and plot, one entry per k."""

import json
from pathlib import Path

import pytest
import torch

from videoflex import load_model
from videoflex.cli.main import main
from videoflex.eval.i3d_weights import default_weights_path
from videoflex.eval.sweep import SweepSettings, default_keeps, run_sweep

CLIP = str(Path(__file__).resolve().parents[1] / "assets" / "carphone.mp4")


def test_default_keeps_are_powers_of_two_up_to_n():
    assert default_keeps(16) == (1, 2, 4, 8, 16)
    assert default_keeps(24) == (1, 2, 4, 8, 16, 24)


def test_eval_recon_writes_results_and_plot(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["eval", "recon", "--data", CLIP, "--model", "flex-tiny", "--keep", "1,4,16", "--steps", "2",
                 "--no-fvd", "-o", str(out), "--quiet"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["keep"] for r in results["results"]] == [1, 4, 16]
    assert all(r["psnr"] > 0 and r["rfvd"] is None for r in results["results"])
    assert results["settings"]["steps"] == 2 and results["model"] == "flex-tiny"
    identity = load_model("flex-tiny").identity  # the preset's seeded weights: the same in every process
    assert (results["model_kind"], results["model_config_hash"], results["model_hash"]) == (
        identity.kind, identity.config_hash, identity.weights_hash)
    png = out / "quality_vs_tokens.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "16" in capsys.readouterr().out


def test_sweep_quality_differs_across_keep(tiny_model):
    """With random (non-zero) heads, fewer tokens give a different reconstruction."""
    clips = torch.rand(2, 3, 17, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    result = run_sweep(tiny_model, clips, SweepSettings((1, 16), steps=2, guidance=1.0), progress=False)
    assert result.results[0].psnr != result.results[1].psnr
    assert [r.tokens_per_clip for r in result.results] == [5, 80]


@pytest.mark.slow
@pytest.mark.skipif(not default_weights_path().is_file(), reason="I3D weights not fetched (make test fetches them)")
def test_eval_recon_with_rfvd(tmp_path):
    out = tmp_path / "sweep"
    assert main(["eval", "recon", "--data", CLIP, "--model", "flex-tiny", "--keep", "1,16", "--steps", "1",
                 "--clips-per-video", "2", "-o", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert all(r["rfvd"] is not None and r["rfvd"] >= 0 for r in results["results"])


def test_sweep_refuses_rfvd_of_one_clip_before_any_work(tiny_model):
    """A Frechet distance needs a covariance: one clip with I3D is refused up front (the CLI skips rFVD)."""
    class NoI3D(torch.nn.Module):
        def forward(self, video):
            raise AssertionError("I3D ran")

    clips = torch.zeros(1, 3, 17, 32, 32)
    with pytest.raises(ValueError, match="rFVD needs at least 2 clips"):
        run_sweep(tiny_model, clips, SweepSettings((16,), steps=1, guidance=1.0), NoI3D(), progress=False)

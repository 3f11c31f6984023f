"""The silhouette shape classifier: maps that forget position, size and colour; learns shapes; seeded; refuses
bad input."""

import pytest
import torch

from videoflex.data.shapes import ShapesConfig, ShapesDataset
from videoflex.eval.silhouette import (
    SilhouetteClassifier,
    SilhouetteClassifierConfig,
    silhouettes,
    train_silhouette_classifier,
)

SMALL = SilhouetteClassifierConfig(width=8, epochs=15, lr=3e-3, batch_size=32)


def square(y: int, x: int, side: int, colour: tuple[float, float, float], hw: int = 32) -> torch.Tensor:
    """One clip [1, 3, 2, hw, hw] of a filled square (top-left y, x) on a dark background."""
    video = torch.full((1, 3, 2, hw, hw), -0.8)
    video[0, :, :, y:y + side, x:x + side] = torch.tensor(colour).view(3, 1, 1, 1)
    return video


def test_maps_forget_position_size_and_colour():
    a = silhouettes(square(2, 3, 8, (1.0, -1.0, -1.0)), frame_stride=1)
    b = silhouettes(square(18, 14, 12, (-1.0, 0.2, 1.0)), frame_stride=1)
    assert a.shape == (1, 2, 16, 16) and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1 + 1e-6
    same = (a - b).abs().mean()
    assert same < 0.01  # the same square wherever it is, however big, in any colour
    circle = torch.full((1, 3, 2, 32, 32), -0.8)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    circle[..., ((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < 25] = 1.0
    assert (silhouettes(circle, frame_stride=1) - a).abs().mean() > 5 * same  # another shape, another map
    blank = silhouettes(torch.full((2, 3, 5, 32, 32), 0.3))
    assert blank.shape == (2, 3, 16, 16) and torch.all(blank == 0)  # frames 0, 2, 4; no foreground
    assert torch.isfinite(silhouettes(torch.rand(1, 3, 1, 8, 8) * 2 - 1, size=8)).all()


def rendered(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n synthetic-shapes clips [n, 3, 5, 32, 32] of circles, squares and triangles, labelled 0, 1, 2."""
    dataset = ShapesDataset(ShapesConfig(num_samples=n, num_frames=5, size=32, seed=seed, label_by="shape",
                                         shapes=("circle", "square", "triangle")))
    return torch.stack([dataset[i].video for i in range(n)]), torch.tensor([dataset[i].label for i in range(n)])


def test_learns_shapes_and_is_seeded():
    video, labels = rendered(48, 0)
    names = ("circle", "square", "triangle")
    a = train_silhouette_classifier(video, labels, names, SMALL)
    b = train_silhouette_classifier(video, labels, names, SMALL)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert x.numpy().tobytes() == y.numpy().tobytes(), name
    held_out, truth = rendered(48, 1)
    probs = a.probabilities(held_out)
    assert probs.shape == (48, 3) and torch.allclose(probs.sum(1), torch.ones(48))
    assert a.accuracy(held_out, truth) >= 0.9


def test_bad_input_is_refused():
    video, labels = rendered(4, 0)
    with pytest.raises(ValueError, match="labels must be int64"):
        train_silhouette_classifier(video, labels + 3, ("a", "b", "c"), SMALL)
    with pytest.raises(ValueError, match=r"need video"):
        train_silhouette_classifier(video[:, :, 0], labels, ("a", "b", "c"), SMALL)
    with pytest.raises(ValueError, match="distinct class names"):
        SilhouetteClassifier(("a", "a"))
    with pytest.raises(ValueError, match="video must be float"):
        silhouettes(torch.zeros(1, 1, 2, 8, 8))
    with pytest.raises(ValueError, match="multiple of 4"):
        SilhouetteClassifierConfig(size=10)
    with pytest.raises(ValueError, match="invalid silhouette"):
        SilhouetteClassifierConfig(epochs=2.5)
    with pytest.raises(ValueError, match="NaN or infinite"):
        silhouettes(video.clone().index_fill_(0, torch.tensor([1]), float("nan")))
    with pytest.raises(ValueError, match="B>=1"):
        silhouettes(video[:0])
    with pytest.raises(ValueError, match="radius_scale"):
        silhouettes(video, radius_scale=-2.5)
    model = SilhouetteClassifier(("a", "b", "c"), SMALL)
    for bad in (labels[:1], labels[:, None], labels + 7, labels.float()):  # never broadcast or compared silently
        with pytest.raises(ValueError, match="labels must be int64"):
            model.accuracy(video, bad)


def test_non_square_frames_keep_the_shape():
    """A square on a 32x64 frame gives the map it gives on a 32x32 one."""
    wide = torch.full((1, 3, 2, 32, 64), -0.8)
    wide[..., 10:20, 40:50] = 1.0
    assert (silhouettes(wide, frame_stride=1) - silhouettes(square(10, 10, 10, (1.0, 1.0, 1.0)), frame_stride=1)
            ).abs().mean() < 0.01

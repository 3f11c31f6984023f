"""The model registry: a save/load round trip of every kind, refusal of another kind's file, seeded presets
whose identity is the same in two processes, and the weights hash's cache."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from videoflex import KINDS, PRESETS, ModelIdentity, load_model
from videoflex.models.identity import weights_hash
from videoflex.models.pretrained import CONFIG_NAME, MODEL_FORMAT, WEIGHTS_NAME, PretrainedModel
from videoflex.registry import ModelKind


def smallest_preset(kind: ModelKind) -> str:
    """The preset of ``kind`` with the fewest parameters (counted on the meta device)."""
    def size(name: str) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in kind.model_class(kind.presets[name]()).parameters())

    return min(kind.presets, key=size)


@pytest.mark.parametrize("kind_name", sorted(KINDS))
def test_every_kind_round_trips_through_the_registry(kind_name, tmp_path):
    kind = KINDS[kind_name]
    preset = smallest_preset(kind)
    model = kind.model_class.from_preset(preset, seed=3)
    assert isinstance(model, PretrainedModel) and model.kind == kind_name
    folder = model.save_pretrained(tmp_path / "model")
    with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as f:
        metadata = f.metadata()
    assert (metadata["format"], metadata["kind"]) == (MODEL_FORMAT, kind_name)
    described = json.loads((folder / CONFIG_NAME).read_text())
    assert (described["kind"], described["config"]["name"]) == (kind_name, preset)
    loaded = load_model(folder)
    assert type(loaded) is kind.model_class and loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.identity == model.identity
    assert load_model(folder / WEIGHTS_NAME).identity == model.identity  # the file itself


def test_a_file_of_another_kind_is_refused(tmp_path):
    kind = KINDS["flex-tokenizer"]

    class Other(kind.model_class):  # the same architecture under another kind name
        kind = "other-kind"

    Other.from_preset("flex-tiny").save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="holds a model of kind 'other-kind', not 'flex-tokenizer'"):
        kind.model_class.from_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="kind 'other-kind', which this videoflex does not know"):
        load_model(tmp_path / "other")


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no-such-model: no such file or folder, and not a preset"):
        load_model("no-such-model")
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_model(bad)


PROCESS = """
from videoflex import load_model
print(load_model({name!r}).identity.weights_hash)
"""


@pytest.mark.parametrize("name", ["flex-tiny"])
def test_preset_weights_are_seeded_and_the_same_in_another_process(name):
    first, second = load_model(name), load_model(name)
    assert first.identity == second.identity and first.identity.kind == PRESETS[name].kind.name
    a, b = first.state_dict(), second.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = torch.random.get_rng_state()
    other_seed = PRESETS[name].kind.model_class.from_preset(name, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global random stream is untouched
    assert other_seed.identity.weights_hash != first.identity.weights_hash
    assert other_seed.identity.config_hash == first.identity.config_hash
    out = subprocess.run([sys.executable, "-c", PROCESS.format(name=name)], check=True, capture_output=True,
                         text=True, timeout=300)
    assert out.stdout.strip() == first.identity.weights_hash


def test_weights_hash_is_cached_and_follows_every_change():
    model = load_model("flex-tiny")
    first = weights_hash(model)
    assert weights_hash(model) == first and len(first) == 16
    with torch.no_grad():
        model.decoder.head.bias[0] += 1.0  # in place: the version counter moves
    changed = weights_hash(model)
    assert changed != first
    model.load_state_dict(load_model("flex-tiny").state_dict())  # copy_ back: the same values, same hash
    assert weights_hash(model) == first
    replaced = model.decoder.head.bias.detach().clone()
    replaced[0] += 1.0
    model.decoder.head.bias = torch.nn.Parameter(replaced)  # a new tensor object with the changed values
    assert weights_hash(model) == changed
    assert weights_hash(model.to(torch.bfloat16)) != first  # the dtype is part of the hash


def test_identity_text_names_kind_name_and_both_hashes():
    identity = ModelIdentity("flex-tokenizer", "demo", "0123456789abcdef", "fedcba9876543210")
    assert str(identity) == "flex-tokenizer 'demo' (config 0123456789abcdef, weights fedcba9876543210)"
    assert identity.same_model(ModelIdentity("flex-tokenizer", "renamed", "0123456789abcdef", "fedcba9876543210"))
    with pytest.raises(ValueError, match="weights_hash must not be empty"):
        ModelIdentity("flex-tokenizer", "demo", "0123456789abcdef", "")

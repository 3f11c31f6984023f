"""The shipped checkpoints stay usable together: each generator's recorded tokenizer is the shipped one, down
to its config and weights hashes, and the card states the identity the files have."""

import dataclasses
import re
from pathlib import Path

import pytest

from videoflex import registry

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"
GENERATORS = sorted(p.name for p in CHECKPOINTS.glob("generator-*"))


def card_identity(name: str) -> str:
    """The identity in the card's ``| identity |`` row, as ``videoflex inspect`` prints it."""
    row = next(line for line in (CHECKPOINTS / name / "README.md").read_text().splitlines()
               if line.startswith("| identity |"))
    found = re.search(r"'([^']+)' \(config ([0-9a-f]{16}), weights ([0-9a-f]{16})\)", row)
    assert found, f"checkpoints/{name}/README.md: no identity in {row!r}"
    return found.group(0)


def test_there_are_shipped_generators():
    assert GENERATORS, "no checkpoints/generator-* folders"


@pytest.mark.parametrize("name", GENERATORS)
def test_each_generator_records_the_shipped_tokenizer(name):
    generator = registry.load_model(CHECKPOINTS / name)
    ref = generator.config.tokenizer
    tokenizer = registry.load_model(ROOT / ref.path)
    assert ref.identity.same_model(tokenizer.identity), (ref.identity, tokenizer.identity)
    for model, folder in ((generator, name), (tokenizer, Path(ref.path).name)):
        identity = model.identity
        assert card_identity(folder) == f"'{identity.name}' (config {identity.config_hash}, weights " \
                                        f"{identity.weights_hash})"


def test_a_field_added_later_keeps_old_hashes_at_its_default():
    """DecoderConfig.linear_input came after the first revision of checkpoints/shapes (preset flex-shapes) was
    published: at its default the preset's config hash is the one recorded then; set otherwise, the hash
    changes."""
    model = registry.load_model("flex-shapes")
    config = model.config
    assert model.hash_config(config) == "2cc5d9a8ebea1592"
    codes = dataclasses.replace(config, decoder=dataclasses.replace(config.decoder, linear_input="codes"))
    assert model.hash_config(codes) != model.hash_config(config)

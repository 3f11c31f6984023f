import pytest
import torch

from videoflex import PRESETS, VideoFlexTok, get_preset
from videoflex.registry import KINDS, ModelKind, gather_presets
from videoflex.tokenizers.flex.presets import PRESETS as FLEX_PRESETS
from videoflex.tokenizers.params import count_parameters


@pytest.mark.parametrize("name", sorted(FLEX_PRESETS))
def test_every_preset_builds_on_the_meta_device(name):
    with torch.device("meta"):
        model = VideoFlexTok(get_preset(name))
    counts = count_parameters(model)
    assert counts.encoder > 0 and counts.decoder > counts.adaln > 0


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_named_as_its_config_and_unlike_a_shipped_model(name):
    config = PRESETS[name].config()
    assert config.name == name and PRESETS[name].kind.config_class is type(config)
    assert name.startswith("flex-") or PRESETS[name].kind.name != "flex-tokenizer"
    assert name != "demo"  # the name of the shipped trained model (checkpoints/demo)


def test_preset_names_are_unique_across_kinds():
    flex = KINDS["flex-tokenizer"]
    twin = ModelKind("twin", flex.config_class, flex.model_class, {"flex-tiny": flex.presets["flex-tiny"]})
    with pytest.raises(ValueError, match="'flex-tiny' is defined by kinds 'flex-tokenizer' and 'twin'"):
        gather_presets({"flex-tokenizer": flex, "twin": twin})


def test_k600_matches_the_papers_570m_within_3_percent():
    with torch.device("meta"):
        counts = count_parameters(VideoFlexTok(get_preset("flex-k600-d18")))
    assert abs(counts.transformer_without_adaln / 570e6 - 1) < 0.03


def test_panda_widths_and_unknown_preset():
    config = get_preset("flex-panda-d18-d28")
    assert (config.encoder.width, config.encoder.depth, config.decoder.width, config.decoder.depth) == (1152, 18, 1792, 28)
    assert config.image_size == (256, 256) and config.decoder.patch_size == 2
    for old in ("k600", "tiny", "demo"):  # the names before the flex- prefix are gone
        with pytest.raises(ValueError, match="unknown preset"):
            get_preset(old)

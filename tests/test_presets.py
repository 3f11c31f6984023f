import pytest
import torch

from videoflex import PRESETS, VideoFlexTok, get_preset
from videoflex.tokenizers.flex.params import count_parameters


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_on_the_meta_device(name):
    with torch.device("meta"):
        model = VideoFlexTok(get_preset(name))
    counts = count_parameters(model)
    assert counts.encoder > 0 and counts.decoder > counts.adaln > 0


def test_k600_matches_the_papers_570m_within_3_percent():
    with torch.device("meta"):
        counts = count_parameters(VideoFlexTok(get_preset("k600-d18")))
    assert abs(counts.transformer_without_adaln / 570e6 - 1) < 0.03


def test_panda_widths_and_unknown_preset():
    config = get_preset("panda-d18-d28")
    assert (config.encoder.width, config.encoder.depth, config.decoder.width, config.decoder.depth) == (1152, 18, 1792, 28)
    assert config.image_size == (256, 256) and config.decoder.patch_size == 2
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("k600")

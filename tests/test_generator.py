"""The AR generator: token orders, sampling functions, cached == uncached generation, overfitting, class and
budget handling, sliding past max_steps, parameter counts, and refusals of bad configs and inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from videoflex import load_model
from videoflex.generators.ar import ARConfig, ARGenerator, SamplingConfig, SequenceLayout, generate
from videoflex.generators.ar.config import TokenizerRef
from videoflex.generators.ar.orders import from_sequence, to_sequence
from videoflex.generators.ar.sampling import cfg_combine, cfg_scale_at, sample_ids, top_k_filter, top_p_filter
from videoflex.models.identity import ModelIdentity
from videoflex.nn.blocks import Block


def debug_model(**changes) -> ARGenerator:
    config = dataclasses.replace(ARGenerator.preset_config("ar-debug"), **changes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ARGenerator(config).eval()


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------- orders


@pytest.mark.parametrize("order", ["step_major", "rank_major"])
def test_orders_round_trip_exactly(order):
    ids = torch.randint(0, 1000, (2, 5, 3), generator=seeded())
    seq = to_sequence(ids, order)
    assert seq.shape == (2, 15)
    assert torch.equal(from_sequence(seq, order, 5, 3), ids)
    step, rank = SequenceLayout(order, 5, 3).coords()
    assert torch.equal(seq, ids[:, step, rank])  # position j holds the id of (step[j], rank[j])


def test_orders_lay_ids_out_as_documented():
    ids = torch.arange(6).reshape(1, 2, 3)  # [t=2, k=3]: id = 3 * step + rank
    assert to_sequence(ids, "step_major").tolist() == [[0, 1, 2, 3, 4, 5]]
    assert to_sequence(ids, "rank_major").tolist() == [[0, 3, 1, 4, 2, 5]]
    full = to_sequence(torch.arange(12).reshape(1, 3, 4), "rank_major")
    assert torch.equal(full[:, :6], to_sequence(torch.arange(12).reshape(1, 3, 4)[:, :, :2], "rank_major"))


def test_orders_refuse_bad_input():
    with pytest.raises(ValueError, match="unknown token order 'column'"):
        to_sequence(torch.zeros(1, 2, 3), "column")
    with pytest.raises(ValueError, match=r"must be \[B, 6\]"):
        from_sequence(torch.zeros(1, 7), "step_major", 2, 3)
    with pytest.raises(ValueError, match=r"ids must be \[B, t, k\]"):
        to_sequence(torch.zeros(2, 3), "step_major")


# ---------------------------------------------------------------------------------------- logits


def test_cfg_scale_one_is_the_conditional_logits_and_zero_the_unconditional():
    cond, uncond = torch.randn(3, 50, generator=seeded(1)), torch.randn(3, 50, generator=seeded(2))
    assert torch.equal(cfg_combine(cond, uncond, 1.0), cond)
    assert torch.equal(cfg_combine(cond, uncond, 0.0), uncond)
    assert torch.allclose(cfg_combine(cond, uncond, 3.0), uncond + 3.0 * (cond - uncond), atol=1e-5)


def test_linear_cfg_schedule_grows_to_the_scale():
    config = SamplingConfig(cfg_scale=4.0, cfg_schedule="linear")
    assert [cfg_scale_at(config, j, 3) for j in range(3)] == [2.0, 3.0, 4.0]
    assert cfg_scale_at(SamplingConfig(cfg_scale=4.0), 0, 3) == 4.0


def test_top_k_one_is_greedy():
    logits = torch.randn(64, 100, generator=seeded(3))
    uniform = torch.rand(64, generator=seeded(4))
    greedy = sample_ids(logits, SamplingConfig(temperature=0), uniform)
    assert torch.equal(greedy, logits.argmax(-1))
    assert torch.equal(sample_ids(logits, SamplingConfig(temperature=1.5, top_k=1), uniform), greedy)
    assert not torch.equal(sample_ids(logits, SamplingConfig(temperature=1.5), uniform), greedy)
    kept = torch.isfinite(top_k_filter(logits, 5)).sum(-1)
    assert kept.tolist() == [5] * 64


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.05, 0.5, 0.3, 0.15]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p))[0].tolist()
    assert kept(0.5) == [False, True, False, False]  # 0.5 alone reaches 0.5
    assert kept(0.6) == [False, True, True, False]  # 0.5 + 0.3
    assert kept(0.81) == [False, True, True, True]  # 0.5 + 0.3 + 0.15 = 0.95
    assert kept(0.1) == [False, True, False, False]  # the most likely id is always kept
    assert kept(1.0) == [True] * 4
    # sampling never draws a filtered id, whatever the uniform number
    draws = sample_ids(logits.expand(200, 4), SamplingConfig(top_p=0.6), torch.linspace(0, 0.999, 200))
    assert set(draws.tolist()) == {1, 2}


def test_inverse_cdf_draws_follow_the_probabilities():
    logits = torch.tensor([[0.1, 0.2, 0.7]]).log().expand(3, 3)
    ids = sample_ids(logits, SamplingConfig(), torch.tensor([0.05, 0.25, 0.99]))
    assert ids.tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------------------- generation


@pytest.mark.parametrize("order", ["step_major", "rank_major"])
@pytest.mark.parametrize("sampling", [SamplingConfig(temperature=0), SamplingConfig(temperature=1.0),
                                      SamplingConfig(temperature=0.9, top_k=20, top_p=0.9, cfg_scale=2.5,
                                                     cfg_schedule="linear")],
                         ids=["greedy", "sampled", "filtered-cfg"])
def test_cached_sampling_equals_uncached(order, sampling):
    model = debug_model(order=order)
    labels = torch.tensor([0, 1, 2, 3])
    for steps in (3, 5):  # one window, and a slid one
        cached = generate(model, labels, steps, None, sampling, seeded(7), use_cache=True)
        uncached = generate(model, labels, steps, None, sampling, seeded(7), use_cache=False)
        assert cached.shape == (4, steps, 4) and torch.equal(cached, uncached)
        if sampling.temperature:
            assert not torch.equal(generate(model, labels, steps, None, sampling, seeded(8)), cached)


def test_the_same_seed_gives_the_same_ids_and_cfg_scale_one_is_unguided():
    model = debug_model()
    labels = torch.tensor([2, 0])
    first = generate(model, labels, 3, None, SamplingConfig(), seeded(1))
    assert torch.equal(first, generate(model, labels, 3, None, SamplingConfig(), seeded(1)))
    unit = generate(model, labels, 3, None, SamplingConfig(cfg_scale=1.0, cfg_schedule="linear"), seeded(1))
    assert torch.equal(unit, first)
    guided = generate(model, labels, 3, None, SamplingConfig(cfg_scale=5.0), seeded(1))
    assert not torch.equal(guided, first)


@pytest.mark.parametrize("order", ["step_major", "rank_major"])
def test_an_overfit_model_regenerates_its_sequences_under_greedy_decoding(order):
    model = debug_model(order=order, guidance_dropout=0.0).train()
    data = torch.randint(0, 64, (4, 3, 4), generator=seeded(11))
    labels = torch.arange(4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for _ in range(300):
            loss = model.training_loss(data, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert loss.item() < 0.05
    model.eval()
    untrained = generate(debug_model(order=order), labels, 3, None, SamplingConfig(temperature=0))
    assert not torch.equal(untrained, data)
    for use_cache in (True, False):
        regenerated = generate(model, labels, 3, None, SamplingConfig(temperature=0), use_cache=use_cache)
        assert torch.equal(regenerated, data)
    swapped = generate(model, labels.flip(0), 3, None, SamplingConfig(temperature=0))
    assert torch.equal(swapped, data.flip(0))  # the class decides which sequence comes out


def test_changing_the_class_changes_the_output():
    model = debug_model(init_std=0.5)  # at GPT-2's 0.02 the class barely moves a random model's logits
    outs = [generate(model, torch.full((2,), c), 3, None, SamplingConfig(), seeded(4)) for c in range(4)]
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 4  # the same draws, other classes
    logits = [model(torch.zeros(1, 1, dtype=torch.int64), torch.tensor([c]), torch.tensor([0]),
                    model.layout(3)) for c in range(5)]  # 4 classes and the null class
    assert all(not torch.equal(logits[i], logits[j]) for i in range(5) for j in range(i))


@pytest.mark.parametrize("order", ["step_major", "rank_major"])
def test_budget_k_gives_ids_of_shape_steps_by_k_in_range(order):
    model = debug_model(order=order)
    ids = generate(model, torch.tensor([1, 3]), 2, 2, SamplingConfig(), seeded(5))
    assert ids.shape == (2, 2, 2) and ids.dtype == torch.int64
    assert 0 <= ids.min() and ids.max() < 64
    full = generate(model, torch.tensor([1, 3]), 2, None, SamplingConfig(temperature=0), seeded(5))
    prefix = generate(model, torch.tensor([1, 3]), 2, 2, SamplingConfig(temperature=0), seeded(5))
    if order == "rank_major":  # a smaller budget is a prefix of the sequence: the same ids
        assert torch.equal(prefix, full[:, :, :2])


@pytest.mark.parametrize("order", ["step_major", "rank_major"])
def test_sliding_past_max_steps(order):
    model = debug_model(order=order)  # max_steps = 3
    labels = torch.tensor([0, 3])
    sampling = SamplingConfig(temperature=0.8)
    window = generate(model, labels, 3, None, sampling, seeded(9))
    long = generate(model, labels, 7, None, sampling, seeded(9))
    assert long.shape == (2, 7, 4) and 0 <= long.min() and long.max() < 64
    assert torch.equal(long[:, :3], window)  # the first window is the un-slid generation
    short_context = generate(model, labels, 7, None, dataclasses.replace(sampling, context_steps=1), seeded(9))
    assert torch.equal(short_context[:, :3], window) and not torch.equal(short_context, long)
    greedy = SamplingConfig(temperature=0)
    assert torch.equal(generate(model, labels, 7, None, greedy), generate(model, labels, 7, None, greedy,
                                                                           use_cache=False))


def test_unconditional_model_samples_without_labels():
    model = debug_model(num_classes=0)
    ids = generate(model, None, 2, None, SamplingConfig(), seeded(0))
    assert ids.shape == (1, 2, 4)
    assert model.training_loss(torch.zeros(2, 2, 4, dtype=torch.int64), None).isfinite()


def test_guidance_dropout_replaces_labels_by_the_null_class():
    model = debug_model(guidance_dropout=0.5)
    ids = torch.randint(0, 64, (64, 2, 4), generator=seeded(2))
    labels = torch.randint(0, 4, (64,), generator=seeded(3))
    dropped = model.training_loss(ids, labels, seeded(0))
    kept = debug_model().training_loss(ids, labels, seeded(0))  # guidance_dropout 0.1 draws other nulls
    plain = debug_model(guidance_dropout=0.0).training_loss(ids, labels)
    assert dropped.item() != plain.item() and kept.item() != plain.item()


def test_preset_parameter_counts():
    counts = {}
    for name in ARGenerator.presets:
        with torch.device("meta"):
            model = ARGenerator(ARGenerator.preset_config(name))
        counts[name] = sum(p.numel() for p in model.parameters())
        assert sum(p.parameters for p in model.parameter_parts()) == counts[name]
    # ar-debug-text: ar-debug with 1 class row instead of 5 (-256), 2 cross-attention sub-layers
    # (2 * (64*64*2 + 384*64*2 + 64) = 114,816), text RMSNorm and null text (2 * 384)
    assert counts == {"ar-debug": 91_200, "ar-debug-text": 206_528, "ar-2xs": 17_178_240, "ar-xs": 36_192_000,
                      "ar-s": 92_835_328, "ar-m": 183_299_328, "ar-l": 439_458_816, "ar-xl": 876_243_456}


def test_rms_block_keeps_the_tokenizer_block_unchanged():
    layer = Block(64, 16, 128)
    assert sorted(layer.state_dict()) == sorted(Block(64, 16, 128, norm="layer").state_dict())
    assert not any("norm" in k for k in layer.state_dict())
    rms = Block(64, 16, 128, qk_norm=False, norm="rms")
    assert {"attn_norm.weight", "mlp_norm.weight"} <= set(rms.state_dict())
    with pytest.raises(ValueError, match="norm must be 'layer' or 'rms'"):
        Block(64, 16, 128, norm="batch")


# ---------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("changes", "message"), [
    ({"vocab_size": 0}, "vocab_size must be > 0"),
    ({"num_classes": -1}, "num_classes must be >= 0"),
    ({"order": "column"}, "order must be 'step_major' or 'rank_major'"),
    ({"width": 60}, "width 60 is not a multiple of head_dim 16"),
    ({"head_dim": 5, "width": 65}, "head_dim must be even"),
    ({"guidance_dropout": 1.0}, r"guidance_dropout must be in \[0, 1\)"),
    ({"max_steps": 0}, "max_steps must be > 0"),
    ({"class_names": ("a", "b")}, "class_names has 2 names for num_classes 4"),
    ({"text_encoder": "minilm"}, "text_dim must be > 0 iff text_encoder is set"),
    ({"text_dim": 8}, "text_dim must be > 0 iff text_encoder is set"),
    ({"text_max_tokens": 0}, "text_max_tokens must be >= 1"),
])
def test_bad_configs_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(ARGenerator.preset_config("ar-debug"), **changes)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"temperature": -1.0}, "temperature must be >= 0"),
    ({"top_k": -2}, "top_k must be >= 0"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ({"cfg_scale": -0.5}, "cfg_scale must be >= 0"),
    ({"cfg_schedule": "cosine"}, "cfg_schedule must be 'constant' or 'linear'"),
    ({"context_steps": 0}, "context_steps must be >= 1"),
])
def test_bad_sampling_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**kwargs)


def test_bad_inputs_are_refused():
    model = debug_model()
    sampling = SamplingConfig()
    with pytest.raises(ValueError, match=r"labels must be in \[0, num_classes=4\), got \[0, 4\]"):
        generate(model, torch.tensor([0, 4]), 2, None, sampling)
    with pytest.raises(ValueError, match="class-conditional .* labels are needed"):
        generate(model, None, 2, None, sampling)
    with pytest.raises(ValueError, match=r"k \(tokens per step\) must be in \[1, tokens_per_step=4\], got 5"):
        generate(model, torch.tensor([0]), 2, 5, sampling)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        generate(model, torch.tensor([0]), 0, None, sampling)
    with pytest.raises(ValueError, match=r"context_steps must be in \[1, max_steps=3\)"):
        generate(model, torch.tensor([0]), 5, None, SamplingConfig(context_steps=3))
    with pytest.raises(ValueError, match="unconditional: classifier-free guidance"):
        generate(debug_model(num_classes=0), None, 2, None, SamplingConfig(cfg_scale=2.0))
    with pytest.raises(ValueError, match=r"has no classes \(num_classes=0\): pass labels=None"):
        debug_model(num_classes=0).training_loss(torch.zeros(1, 2, 4, dtype=torch.int64), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"ids must be in \[0, vocab_size=64\), got \[0, 64\]"):
        model.training_loss(torch.tensor([[[0, 1, 2, 64]]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"ids must be int64 \[B, t, k\]"):
        model.training_loss(torch.zeros(1, 2, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="a context window holds 1 to max_steps=3 steps, got 4"):
        model.training_loss(torch.zeros(1, 4, 4, dtype=torch.int64), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"cond must be \[B\]"):
        model(torch.zeros(2, 3, dtype=torch.int64), torch.tensor([0]), torch.arange(3), model.layout(3))


def test_saved_generator_loads_and_samples_the_same(tmp_path):
    model = load_model("ar-debug")
    assert isinstance(model, ARGenerator) and model.identity.kind == "ar-generator"
    loaded = load_model(model.save_pretrained(tmp_path / "gen"))
    assert loaded.identity == model.identity and isinstance(loaded.config, ARConfig)
    a = generate(model, torch.tensor([1]), 3, None, SamplingConfig(), seeded(3))
    assert torch.equal(a, generate(loaded, torch.tensor([1]), 3, None, SamplingConfig(), seeded(3)))


def test_class_names_and_tokenizer_reference_survive_save_and_load(tmp_path):
    tokenizer = ModelIdentity("flex-tokenizer", "flex-d18-d18", "0123456789abcdef", "fedcba9876543210")
    ref = TokenizerRef.from_identity(tokenizer, "runs/tok")
    assert ref.identity == tokenizer and ref.path == "runs/tok" and TokenizerRef().identity is None
    with pytest.raises(ValueError, match="kind, config_hash and weights_hash are all set or all empty"):
        TokenizerRef(kind="flex-tokenizer")
    model = debug_model(class_names=("circle", "square", "star", "cross"), tokenizer=ref)
    loaded = load_model(model.save_pretrained(tmp_path / "gen"))
    assert loaded.config == model.config and loaded.identity == model.identity
    assert loaded.config.tokenizer.identity == tokenizer and loaded.config.class_names[2] == "star"


def test_presets_and_inspect_commands_describe_the_generator(tmp_path, capsys):
    from videoflex.cli.main import main

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "kind ar-generator (ARGenerator)" in out and "ar-xl" in out and "679.6M" in out
    folder = load_model("ar-debug").save_pretrained(tmp_path / "gen")
    assert main(["inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "ar-generator (ARGenerator)" in out
    assert "up to 4 per step x 3 steps = 12 ids a window, step_major order" in out
    assert "4 (and a null class for CFG)" in out

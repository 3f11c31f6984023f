"""Shared fixtures: a tiny tokenizer with every parameter random (so no zero-init head hides a bug)."""

from __future__ import annotations

import pytest
import torch

from videoflex import VideoFlexTok


def randomize_(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Give every parameter (zero-initialised heads and adaLN included) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.fixture(scope="session")
def tiny_model() -> VideoFlexTok:
    return randomize_(VideoFlexTok.from_preset("flex-tiny")).eval()


@pytest.fixture
def video() -> torch.Tensor:
    """A random clip ``[2,3,17,32,32]`` in [-1,1] (the tiny model's size)."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 17, 32, 32, generator=g) * 2 - 1


WORDS = ["a", "red", "blue", "green", "circle", "square", "star", "moving", "left", "right", "up", "down"]
TEXT_DIM = 32


@pytest.fixture(scope="session")
def bert_folder(tmp_path_factory):
    """A tiny random BERT (width 32, 1 layer) and a WordPiece tokenizer of WORDS, saved as a model folder."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    wordpiece = tokenizers.Tokenizer(tokenizers.models.WordPiece({w: i for i, w in enumerate(vocab)},
                                                                 unk_token="[UNK]"))
    wordpiece.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    transformers.PreTrainedTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]",
                                         cls_token="[CLS]", sep_token="[SEP]",
                                         mask_token="[MASK]").save_pretrained(folder)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=TEXT_DIM, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformers.BertModel(config).save_pretrained(folder)
    return folder


def assert_prefix_decodes(model, ids: torch.Tensor, keep: int) -> torch.Tensor:
    """The prefix property of a flex tokenizer: decoded with ``keep``, ids ``[B,t,N]`` give the same bytes as
    the same ids with random ids past ``keep`` and as the first ``keep`` ids alone (the same flow noise).
    Returns that decoded video."""
    scrambled = ids.clone()
    scrambled[..., keep:] = torch.randint(0, model.codebook_size, scrambled[..., keep:].shape,
                                          generator=torch.Generator().manual_seed(9))
    decoded = model.detokenize(ids, keep=keep, generator=torch.Generator().manual_seed(0))
    assert torch.equal(decoded, model.detokenize(scrambled, keep=keep, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(decoded, model.detokenize(ids[..., :keep], keep=keep,
                                                 generator=torch.Generator().manual_seed(0)))
    return decoded

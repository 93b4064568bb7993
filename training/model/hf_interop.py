"""Hugging Face NemotronH checkpoints <-> ccforge models.

Hub layout (what `save_pretrained` of transformers 5 writes and NVIDIA publishes): tensors
under `backbone.`, routed experts one per tensor (`mixer.experts.{e}.up_proj.weight`). In memory
transformers renames `backbone.` -> `model.` and stacks experts (conversion_mapping.py,
"nemotron_h"); ccforge keeps `backbone.` and stacks experts, so only experts are converted.
MTP tensors (`mtp.*`) are written too: transformers ignores them on load
(`_keys_to_ignore_on_load_unexpected`), `load_hf` reads them back.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from training.model.config import HybridConfig
from training.model.model import HybridForCausalLM

_TYPE_OF = {"M": "linear_attention", "*": "full_attention", "-": "mlp", "E": "moe"}
_KIND_OF = {v: k for k, v in _TYPE_OF.items()} | {"mamba": "M", "attention": "*"}
# pre-5.0 NemotronH config names (NemotronHConfig.__post_init__)
_LEGACY_NAMES = {
    "mamba_n_groups": "n_groups", "mamba_d_conv": "conv_kernel", "mamba_chunk_size": "chunk_size",
    "mamba_dt_min": "time_step_min", "mamba_dt_max": "time_step_max", "mamba_dt_init_floor": "time_step_floor",
    "mamba_dt_limit": "time_step_limit",
    "mamba_conv_bias": "use_conv_bias",
}
# fields that are ccforge training knobs, not part of a HF config
_CCFORGE_ONLY = {"pattern", "mtp_pattern", "mtp_loss_weight", "router_bias_update_rate", "moe_aux_loss_coeff"}
_EXPERT_KEY = re.compile(r"(.*\.mixer\.experts)\.(\d+)\.(up_proj|down_proj)\.weight$")


def hf_config_dict(cfg: HybridConfig, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """config.json contents for `AutoModelForCausalLM` (model_type nemotron_h)."""
    d = {k: v for k, v in asdict(cfg).items() if k not in _CCFORGE_ONLY}
    return d | {
        "model_type": "nemotron_h",
        "architectures": ["NemotronHForCausalLM"],
        "layers_block_type": [_TYPE_OF[c] for c in cfg.pattern],
        "hybrid_override_pattern": cfg.pattern,
        "num_hidden_layers": cfg.num_layers,
        "mtp_layers_block_type": [_TYPE_OF[c] for c in cfg.mtp_pattern],
        "mtp_hybrid_override_pattern": cfg.mtp_pattern,
        "mlp_hidden_act": "relu2",
        "mamba_hidden_act": "silu",
        "attention_bias": False,
        "expand": cfg.d_inner // cfg.hidden_size or 1,
        "dtype": str(dtype).removeprefix("torch."),
    }


def _special_float(obj: dict[str, Any]) -> Any:
    """transformers >= 5.25 writes inf/nan as {"__float__": "Infinity"} (PreTrainedConfig._encode_special_floats)."""
    if obj.keys() == {"__float__"} and obj["__float__"] in ("Infinity", "-Infinity", "NaN"):
        return float(obj["__float__"])  # float() parses all three
    return obj


def config_from_hf(d: dict[str, Any]) -> HybridConfig:
    """HybridConfig from a NemotronH config.json dict; rejects variants ccforge does not model."""
    d = {_LEGACY_NAMES.get(k, k): v for k, v in d.items()}
    for key, supported in (("mlp_hidden_act", "relu2"), ("mamba_hidden_act", "silu"), ("attention_bias", False)):
        if d.get(key, supported) != supported:
            raise ValueError(f"{key}={d[key]!r} is not supported (ccforge models {key}={supported!r})")
    types = d.get("layers_block_type") or d.get("layer_types")
    pattern = "".join(_KIND_OF[t] for t in types) if types else d["hybrid_override_pattern"]
    mtp_types = d.get("mtp_layers_block_type")
    mtp_pattern = "".join(_KIND_OF[t] for t in mtp_types) if mtp_types else d.get("mtp_hybrid_override_pattern", "*E")
    known = {f.name for f in fields(HybridConfig)} - _CCFORGE_ONLY
    return HybridConfig(pattern=pattern, mtp_pattern=mtp_pattern, **{k: v for k, v in d.items() if k in known})


def _to_ccforge_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`model.` -> `backbone.`, per-expert 2-D weights -> stacked (E, out, in) weights."""
    out: dict[str, torch.Tensor] = {}
    experts: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    for key, t in tensors.items():
        key = re.sub(r"^model\.", "backbone.", key)
        if m := _EXPERT_KEY.match(key):
            experts.setdefault((m[1], m[3]), {})[int(m[2])] = t
        else:
            out[key] = t
    for (prefix, proj), per_expert in experts.items():
        out[f"{prefix}.{proj}"] = torch.stack([per_expert[e] for e in range(len(per_expert))])
    return out


def _to_hub_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, t in state.items():
        if re.search(r"\.mixer\.experts\.(up_proj|down_proj)$", key):
            prefix, proj = key.rsplit(".", 1)
            out |= {f"{prefix}.{e}.{proj}.weight": w.contiguous() for e, w in enumerate(t.unbind(0))}
        else:
            out[key] = t.contiguous()
    return out


def load_hf(path: str | Path, *, dtype: torch.dtype | None = None) -> HybridForCausalLM:
    """A ccforge model from a NemotronH checkpoint directory (config.json + *.safetensors).
    `dtype` casts floating weights (the router bias stays float32); None keeps the stored dtype."""
    path = Path(path)
    cfg = config_from_hf(json.loads((path / "config.json").read_text(), object_hook=_special_float))
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(path.glob("*.safetensors")):
        tensors |= load_file(shard)
    state = _to_ccforge_state(tensors)
    if dtype is not None:
        state = {k: v if k.endswith("e_score_correction_bias") else v.to(dtype) for k, v in state.items()}
    model = HybridForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not k.startswith("mtp.")]  # MTP keeps its fresh init
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def save_hf(model: HybridForCausalLM, path: str | Path) -> None:
    """Write config.json + model.safetensors loadable by `AutoModelForCausalLM.from_pretrained`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    dtype = model.lm_head.weight.dtype
    (path / "config.json").write_text(json.dumps(hf_config_dict(model.cfg, dtype), indent=2))
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_file(_to_hub_state(state), str(path / "model.safetensors"), metadata={"format": "pt"})

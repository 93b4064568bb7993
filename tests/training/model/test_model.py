"""Whole-model behaviour: document packing, MTP, training step, presets and their sizes."""

from __future__ import annotations

import pytest
import torch

from training.model import PRESETS, HybridConfig, HybridForCausalLM, count_parameters, format_model_info, get_preset
from training.model.info import meta_model


def test_document_reset_equals_running_documents_separately():
    torch.manual_seed(0)
    model = HybridForCausalLM(get_preset("tiny", chunk_size=16)).eval()
    lengths = [20, 7, 33]
    docs = [torch.randint(0, 1024, (1, n)) for n in lengths]
    doc_ids = torch.repeat_interleave(torch.arange(3), torch.tensor(lengths))[None]
    with torch.no_grad():
        packed = model(torch.cat(docs, 1), doc_ids_BT=doc_ids).logits
        separate = torch.cat([model(d).logits for d in docs], 1)
        unmasked = model(torch.cat(docs, 1)).logits
    torch.testing.assert_close(packed, separate, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(unmasked[:, 20:], separate[:, 20:], atol=1e-3)


def test_training_step_with_mtp_and_documents():
    torch.manual_seed(0)
    model = HybridForCausalLM(get_preset("tiny", num_nextn_predict_layers=2)).train()
    ids = torch.randint(0, 1024, (2, 24))
    doc_ids = torch.tensor([[0] * 10 + [1] * 14, [0] * 24])
    out = model(ids[:, :-1], doc_ids_BT=doc_ids[:, :-1], labels_BT=ids[:, 1:])
    assert out.logits.shape == (2, 23, 1024) and out.mtp_loss is not None
    torch.testing.assert_close(out.loss, out.lm_loss + 0.3 * out.mtp_loss)
    out.loss.backward()
    assert all(p.grad is not None for p in model.mtp.parameters())
    assert model.mtp[0].eh_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "preset,total,active",
    [
        ("nemotron-h-8b", 8.10e9, 8.10e9),
        ("nemotron-nano-9b-v2", 8.89e9, 8.89e9),
        # the model cards of nvidia/Nemotron-H-56B-Base-8K and -47B-Base-8K: "56B" and "47B" parameters
        ("nemotron-h-56b", 56e9, 56e9),
        ("nemotron-h-47b", 47e9, 47e9),
        # the nvidia/NVIDIA-Nemotron-Nano-12B-v2-Base card: "Number of model parameters: 12.31B"
        ("nemotron-nano-12b-v2-base", 12.31e9, 12.31e9),
        # NVIDIA's card: 31.6B total, 3.6B active including embeddings
        ("nemotron-3-nano-30b-a3b", 31.6e9, 3.58e9),
        # 120.7B without the MTP depth; 12.8B active per token without MTP
        ("nemotron-3-super-120b-a12b", 120.7e9, 12.77e9),
    ],
)
def test_published_parameter_counts(preset, total, active):
    n = count_parameters(meta_model(PRESETS[preset]))
    assert abs(n.total - n.mtp - total) / total < 0.01
    assert abs(n.active - n.active_mtp - active) / active < 0.01


def test_format_model_info_reports_total_and_active():
    report = format_model_info("nemotron-3-nano-30b-a3b")
    assert "31.58B" in report and "active" in report


def test_config_validation_says_how_to_fix():
    with pytest.raises(ValueError, match="M, \\*, -, E"):
        HybridConfig(pattern="MX")
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        get_preset("tiny", num_key_value_heads=3)
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")


@pytest.mark.parametrize("preset", ["nemotron-h-8b", "nemotron-3-super-120b-a12b", "small"])
def test_flops_at_one_token_equal_six_times_active_matmul_parameters(preset):
    """With a context of one token the count must reduce to the 6N rule (Kaplan et al. 2020)
    over active parameters, minus the input embedding (a lookup, not a matmul), plus the SSD
    state build and read-out (2 x 2 H P N per Mamba layer, forward), which has no parameters."""
    from training.model.flops import training_flops_per_token

    cfg = PRESETS[preset]
    n = count_parameters(meta_model(cfg))
    state = cfg.pattern.count("M") * 4 * cfg.mamba_num_heads * cfg.mamba_head_dim * cfg.ssm_state_size
    expected = 6 * (n.active - n.active_mtp - cfg.vocab_size * cfg.hidden_size) + 3 * state
    assert abs(training_flops_per_token(cfg, seq_len=1) - expected) / expected < 0.01

"""The head and cross-entropy fused over chunks equal the unfused path: loss and gradients of the
head's input and weight, with ignored targets, chunks that do not divide the tokens, and bf16."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.model import HybridForCausalLM, get_preset
from training.model.chunked_loss import linear_cross_entropy
from training.model.linear import linear


def _unfused(h_BTD: torch.Tensor, weight_VD: torch.Tensor, labels_BT: torch.Tensor) -> torch.Tensor:
    logits_BTV = linear(h_BTD, weight_VD).float()
    return F.cross_entropy(logits_BTV.flatten(0, 1), labels_BT.flatten(), ignore_index=-100)


@pytest.mark.parametrize(("dtype", "chunk", "tolerance"), [
    (torch.float32, 7, 1e-6), (torch.float32, 1000, 1e-6), (torch.bfloat16, 16, 1e-2)])
def test_fused_equals_unfused(dtype: torch.dtype, chunk: int, tolerance: float) -> None:
    generator = torch.Generator().manual_seed(0)
    h = torch.randn(3, 41, 32, generator=generator).to(dtype).requires_grad_()
    weight = (torch.randn(97, 32, generator=generator) / 6).to(dtype).requires_grad_()
    labels = torch.randint(0, 97, (3, 41), generator=generator)
    labels[0, :5] = -100
    labels[2, -1] = -100
    expected = _unfused(h, weight, labels)
    expected.backward()
    expected_grads = h.grad.clone(), weight.grad.clone()
    h.grad = weight.grad = None
    got = linear_cross_entropy(h, weight, labels, chunk_tokens=chunk)
    (got * 1.0).backward()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=tolerance * 0.1, rtol=tolerance * 0.1)
    torch.testing.assert_close(h.grad, expected_grads[0], atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(weight.grad, expected_grads[1], atol=tolerance, rtol=tolerance)


def test_every_target_ignored_gives_nan_like_cross_entropy() -> None:
    h, weight = torch.randn(1, 4, 8), torch.randn(11, 8)
    labels = torch.full((1, 4), -100)
    assert torch.isnan(linear_cross_entropy(h, weight, labels)) and torch.isnan(_unfused(h, weight, labels))


def test_model_loss_without_logits_equals_the_logits_path() -> None:
    """The training forward (no logits, fused head loss, MTP included) against the default forward."""
    torch.manual_seed(0)
    model = HybridForCausalLM(get_preset("tiny", vocab_size=512, num_nextn_predict_layers=1))
    ids = torch.randint(0, 512, (2, 33))
    doc_ids = torch.tensor([[0] * 20 + [1] * 13, [0] * 33])
    with_logits = model(ids[:, :-1], doc_ids_BT=doc_ids[:, :-1], labels_BT=ids[:, 1:])
    with_logits.loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    fused = model(ids[:, :-1], doc_ids_BT=doc_ids[:, :-1], labels_BT=ids[:, 1:], return_logits=False)
    fused.loss.backward()
    assert fused.logits is None and with_logits.logits.shape == (2, 32, 512) and fused.mtp_loss is not None
    torch.testing.assert_close(fused.lm_loss, with_logits.lm_loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(fused.mtp_loss, with_logits.mtp_loss, atol=1e-6, rtol=1e-6)
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, expected[name], atol=1e-6, rtol=1e-5, msg=name)

"""The Mamba-2 depthwise causal conv (its own forward and backward) against the plain formulation:
one shifted, zero-padded copy of the input per tap, taps from an earlier document dropped."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.model.mamba2 import causal_conv1d


def _padded_taps(x_BTX, weight_XK, bias_X, doc_ids_BT):
    K, T = weight_XK.shape[1], x_BTX.shape[1]
    out_BTX = x_BTX * weight_XK[:, K - 1]
    for lag in range(1, min(K, T)):
        tap_BTX = F.pad(x_BTX[:, : T - lag], (0, 0, lag, 0)) * weight_XK[:, K - 1 - lag]
        if doc_ids_BT is not None:
            tap_BTX = tap_BTX * F.pad(doc_ids_BT[:, lag:] == doc_ids_BT[:, :-lag], (lag, 0))[..., None]
        out_BTX = out_BTX + tap_BTX
    return out_BTX if bias_X is None else out_BTX + bias_X


def test_equals_nn_conv1d_without_documents():
    g = torch.Generator().manual_seed(0)
    x, weight, bias = torch.randn(2, 19, 6, generator=g), torch.randn(6, 4, generator=g), torch.randn(6, generator=g)
    reference = F.conv1d(x.transpose(1, 2), weight[:, None, :], bias, padding=3, groups=6)[..., :19].transpose(1, 2)
    torch.testing.assert_close(causal_conv1d(x, weight, bias, None), reference, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("T", [1, 2, 3, 5, 37])
@pytest.mark.parametrize("documents", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_forward_and_gradients_equal_the_padded_taps(T, documents, with_bias):
    g = torch.Generator().manual_seed(T)
    # The input is a slice of a wider tensor, as the conv sees it after in_proj's split.
    wide = torch.randn(2, T, 20, generator=g)
    weight, bias = torch.randn(12, 4, generator=g), torch.randn(12, generator=g) if with_bias else None
    doc_ids = torch.sort(torch.randint(0, 3, (2, T), generator=g), dim=1).values if documents else None
    grad_out = torch.randn(2, T, 12, generator=g)
    results = []
    for conv in (_padded_taps, causal_conv1d):
        leaves = [t.clone().requires_grad_() for t in (wide, weight, *([bias] if with_bias else []))]
        out = conv(leaves[0][..., 4:16], leaves[1], leaves[2] if with_bias else None, doc_ids)
        out.backward(grad_out)
        results.append([out.detach(), *(leaf.grad for leaf in leaves)])
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

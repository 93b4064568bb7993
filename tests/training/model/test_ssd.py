"""The chunked SSD scan equals the sequential recurrence (its slow twin)."""

from __future__ import annotations

import pytest
import torch

from training.model.ssd import ssd_chunked, ssd_naive


def _inputs(bsz, T, H, P, G, N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x_BTHP=torch.randn(bsz, T, H, P, generator=g),
        dt_BTH=torch.rand(bsz, T, H, generator=g) * 0.5 + 1e-3,
        A_H=-torch.rand(H, generator=g) * 4,
        B_BTGN=torch.randn(bsz, T, G, N, generator=g),
        C_BTGN=torch.randn(bsz, T, G, N, generator=g),
    )


@pytest.mark.parametrize(
    "bsz,T,H,P,G,N,chunk",
    [(1, 1, 2, 4, 1, 4, 8), (2, 37, 4, 8, 2, 6, 8), (2, 64, 6, 4, 3, 8, 16), (1, 50, 8, 16, 1, 16, 64), (2, 33, 4, 8, 4, 5, 1)],
)
def test_chunked_equals_sequential(bsz, T, H, P, G, N, chunk):
    inputs = _inputs(bsz, T, H, P, G, N)
    torch.testing.assert_close(ssd_chunked(**inputs, chunk_size=chunk), ssd_naive(**inputs), atol=2e-5, rtol=1e-4)


def test_chunked_accepts_bfloat16_inputs():
    inputs = {k: v.bfloat16() if k != "A_H" else v for k, v in _inputs(2, 40, 4, 8, 2, 8).items()}
    got = ssd_chunked(**inputs, chunk_size=16)
    assert got.dtype == torch.float32  # computed in float32 like HF / mamba_ssm
    torch.testing.assert_close(got, ssd_naive(**inputs), atol=1e-4, rtol=1e-4)


def test_gradients_match_sequential():
    leaves = {k: v.requires_grad_() for k, v in _inputs(1, 24, 4, 4, 2, 4).items()}
    grads = []
    for fn in (lambda: ssd_chunked(**leaves, chunk_size=8), lambda: ssd_naive(**leaves)):
        fn().square().sum().backward()
        grads.append([v.grad.clone() for v in leaves.values()])
        for v in leaves.values():
            v.grad = None
    for fast, slow in zip(*grads):
        torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("chunk", [1, 4, 8, 64])
def test_document_reset_equals_separate_documents(chunk):
    inputs = _inputs(1, 37, 4, 8, 2, 6)
    lengths = [10, 3, 8, 16]  # boundaries inside and exactly on chunk edges
    doc_ids = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))[None]
    packed = ssd_chunked(**inputs, chunk_size=chunk, doc_ids_BT=doc_ids)
    start = 0
    for n in lengths:
        piece = {k: v if k == "A_H" else v[:, start : start + n] for k, v in inputs.items()}
        torch.testing.assert_close(packed[:, start : start + n], ssd_naive(**piece), atol=2e-5, rtol=1e-4)
        start += n
    torch.testing.assert_close(packed, ssd_naive(**inputs, doc_ids_BT=doc_ids), atol=2e-5, rtol=1e-4)

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


@pytest.mark.parametrize("bsz,T,H,P,G,N,chunk", [(1, 24, 4, 4, 2, 4, 8), (2, 37, 4, 8, 2, 6, 8), (2, 33, 4, 8, 4, 5, 1)])
@pytest.mark.parametrize("documents", [False, True])
def test_gradients_match_sequential(bsz, T, H, P, G, N, chunk, documents):
    """Every input's gradient, also across document boundaries (the chunked scan's own backward
    pieces: the masked decay matrix and the chunk-to-chunk state hand-off)."""
    inputs = _inputs(bsz, T, H, P, G, N)
    doc_ids = torch.sort(torch.randint(0, 4, (bsz, T), generator=torch.Generator().manual_seed(3)), dim=1).values
    grad_out = torch.randn(bsz, T, H, P, generator=torch.Generator().manual_seed(4))
    grads = []
    for fn in (lambda **k: ssd_chunked(**k, chunk_size=chunk, doc_ids_BT=doc_ids if documents else None),
               lambda **k: ssd_naive(**k, doc_ids_BT=doc_ids if documents else None)):
        leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
        fn(**leaves).backward(grad_out)
        grads.append([v.grad for v in leaves.values()])
    for name, fast, slow in zip(inputs, *grads):
        torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4, msg=name)


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

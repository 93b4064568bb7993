"""Document-causal attention without a T x T mask equals the dense mask it replaced (its slow twin)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import training.model.attention as attention
from training.model import get_preset
from training.model.attention import (
    Attention, _tile_plan, blockwise_document_attention, document_starts, flex_document_attention,
)


def document_causal_mask(doc_ids_BT: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, S) boolean: key s is visible to query t iff s <= t and both are in one document."""
    T = doc_ids_BT.shape[1]
    causal_TS = torch.ones(T, T, dtype=torch.bool, device=doc_ids_BT.device).tril()
    return (causal_TS & (doc_ids_BT[:, :, None] == doc_ids_BT[:, None, :]))[:, None]


def dense_attention(q_BHTP, k_BKTP, v_BKTP, doc_ids_BT=None):
    if doc_ids_BT is None:
        return F.scaled_dot_product_attention(q_BHTP, k_BKTP, v_BKTP, is_causal=True, enable_gqa=True)
    mask_B1TS = document_causal_mask(doc_ids_BT)
    return F.scaled_dot_product_attention(q_BHTP, k_BKTP, v_BKTP, attn_mask=mask_B1TS, enable_gqa=True)


def doc_ids(*rows_of_lengths: list[int]) -> torch.Tensor:
    return torch.stack([torch.repeat_interleave(torch.arange(len(r)), torch.tensor(r)) for r in rows_of_lengths])


def random_lengths(T: int, max_len: int, g: torch.Generator) -> list[int]:
    lengths = []
    while sum(lengths) < T:
        lengths.append(min(int(torch.randint(1, max_len + 1, (), generator=g)), T - sum(lengths)))
    return lengths


_G = torch.Generator().manual_seed(0)
T = 101  # block 16: 7 blocks, the last one partial
DOCUMENTS = {
    "one document": doc_ids([T]),
    "tiny documents": doc_ids(random_lengths(T, 3, _G)),
    "crossing blocks": doc_ids(random_lengths(T, 40, _G)),
    "rows differ": doc_ids([T], random_lengths(T, 3, _G), random_lengths(T, 60, _G), [50, 1, 50]),
}


def projections(x_BTD, w_qkv, P):
    """q, k, v (B, H|K, T, P) as the model's projections make them."""
    return tuple((x_BTD @ w).unflatten(-1, (-1, P)).transpose(1, 2) for w in w_qkv)


@pytest.mark.parametrize("documents", list(DOCUMENTS))
@pytest.mark.parametrize("H,K", [(4, 2), (3, 3), (4, 1)])
@pytest.mark.parametrize("block", [16, 32, 128])
def test_blockwise_equals_dense_mask_forward_and_gradients(documents, H, K, block):
    doc_ids_BT = DOCUMENTS[documents]
    B, P, D = doc_ids_BT.shape[0], 8, 12
    g = torch.Generator().manual_seed(1)
    x_BTD = torch.randn(B, T, D, generator=g, requires_grad=True)
    w_qkv = [torch.randn(D, n * P, generator=g) / D**0.5 for n in (H, K, K)]
    grad_o = torch.randn(B, H, T, P, generator=g)

    def outputs_and_gradients(attend):
        """The output and its gradients wrt the projections' input x and wrt q, k, v."""
        q, k, v = projections(x_BTD, w_qkv, P)
        out = attend(q, k, v)
        return (out, *torch.autograd.grad(out, (x_BTD, q, k, v), grad_o))

    starts_BT = document_starts(doc_ids_BT)
    got = outputs_and_gradients(lambda q, k, v: blockwise_document_attention(q, k, v, starts_BT, block_size=block))
    want = outputs_and_gradients(lambda q, k, v: dense_attention(q, k, v, doc_ids_BT))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_bfloat16_inputs_give_bfloat16_outputs_and_gradients():
    doc_ids_BT = DOCUMENTS["rows differ"]
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(4, n, T, 8, generator=g).bfloat16().requires_grad_() for n in (4, 2, 2))
    got = blockwise_document_attention(q, k, v, document_starts(doc_ids_BT), block_size=16)
    got.float().square().sum().backward()
    want = dense_attention(q.detach().float(), k.detach().float(), v.detach().float(), doc_ids_BT)
    assert got.dtype == q.grad.dtype == k.grad.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=1e-2, rtol=1e-2)  # one bf16 rounding of the output


def test_document_starts():
    assert document_starts(torch.tensor([[0, 0, 1, 1, 1, 2], [5, 5, 5, 5, 5, 5]])).tolist() == [
        [0, 0, 2, 2, 2, 5], [0] * 6]


@pytest.mark.parametrize("documents", list(DOCUMENTS))
def test_tile_plan_visits_exactly_the_tiles_with_visible_keys(documents):
    """A tile is planned iff some key in it is visible to some query of its block in some row,
    and left unmasked iff every key is visible to every query in every row."""
    doc_ids_BT, block = DOCUMENTS[documents], 16
    mask_BTS = document_causal_mask(doc_ids_BT)[:, 0]
    planned = {(t.q0, t.k0): t.masked for tiles in _tile_plan(document_starts(doc_ids_BT), block) for t in tiles}
    for q0 in range(0, T, block):
        for k0 in range(0, T, block):
            tile_BNS = mask_BTS[:, q0:q0 + block, k0:k0 + block]
            assert ((q0, k0) in planned) == bool(tile_BNS.any())
            if tile_BNS.any():
                assert planned[q0, k0] == (not tile_BNS.all())


def _saved_bytes(T: int, attend) -> int:
    """Bytes autograd keeps for the backward of one attention call (inputs excluded)."""
    q, k, v = (torch.randn(1, n, T, 16, requires_grad=True) for n in (4, 2, 2))
    inputs = {t.data_ptr() for t in (q, k, v)}
    saved = {}

    def pack(t):
        if t.data_ptr() not in inputs:
            saved[t.data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        attend(q, k, v, doc_ids([T]))
    return sum(saved.values())


def test_saved_activations_grow_linearly():
    """Four times the tokens, at most four times the saved bytes (the dense mask path: 16x)."""
    blockwise = lambda q, k, v, d: blockwise_document_attention(q, k, v, document_starts(d), block_size=64)  # noqa: E731
    assert _saved_bytes(1024, blockwise) <= 4 * _saved_bytes(256, blockwise)
    assert _saved_bytes(1024, dense_attention) > 10 * _saved_bytes(256, dense_attention)


def test_attention_layer_with_documents_equals_dense_mask(monkeypatch):
    """The layer's own path (blockwise on CPU, two blocks of BLOCK_SIZE) against the dense mask."""
    torch.manual_seed(0)
    layer = Attention(get_preset("tiny"))
    T = attention.BLOCK_SIZE + 188
    x_BTD = torch.randn(2, T, layer.cfg.hidden_size)
    doc_ids_BT = doc_ids([100, 500, 100], [T])
    got = layer(x_BTD, doc_ids_BT)
    monkeypatch.setattr(attention, "causal_attention", dense_attention)
    torch.testing.assert_close(got, layer(x_BTD, doc_ids_BT), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("documents", list(DOCUMENTS))
def test_flex_block_mask_equals_dense_mask_eagerly_on_cpu(documents, monkeypatch):
    """The CUDA path's mask_mod and block mask, run by FlexAttention's eager reference on the
    CPU (forward only: FlexAttention has no CPU backward); the compiled kernels need CUDA."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    monkeypatch.setattr(attention, "_compiled_flex", lambda: (create_block_mask, flex_attention))
    doc_ids_BT = DOCUMENTS[documents]
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(doc_ids_BT.shape[0], n, T, 8, generator=g) for n in (4, 2, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile"
        got = flex_document_attention(q, k, v, document_starts(doc_ids_BT))
    torch.testing.assert_close(got, dense_attention(q, k, v, doc_ids_BT), atol=1e-5, rtol=1e-5)

"""Uniform noise for stochastic rounding: deterministic, resumable, with no state to save, and
computed on the device (no host sync).

Draw i of a gradient tensor is the i-th output of a SplitMix64 stream (Steele, Lea and Flood,
"Fast splittable pseudorandom number generators", OOPSLA 2014) seeded with a hash of the `key`
(recipe seed, layer, GEMM, expert) and of a fingerprint of the gradient itself (the sum of its
float32 bit patterns). Why not a generator advanced by a step counter:

- nothing to checkpoint: a resumed run redraws exactly the noise of an uninterrupted one (same
  weights and batch -> same gradients -> same draws), and the model's state dict, hence
  checkpoints and the HF export, stays that of the BF16 model;
- every step, micro-batch and data-parallel rank sees fresh noise because its gradients
  differ, and activation-checkpoint recomputation cannot advance any stream.
The fingerprint never leaves the device: the stream is int64 tensor arithmetic (wrapping
multiplication; logical shifts by masking), so seeds may differ per expert and draws may be
indexed per element. The draws change with any bit of the gradient, so they are as
reproducible as the gradients are.
"""

from __future__ import annotations

import math

import torch

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's increment (golden ratio)
_MUL1, _MUL2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _splitmix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * _MUL1) & _MASK64
    z = ((z ^ (z >> 27)) * _MUL2) & _MASK64
    return z ^ (z >> 31)


def mix64(*words: int) -> int:
    """A 64-bit hash of the words, to derive keys: mix64(seed, layer), mix64(key, expert)..."""
    h = 0
    for w in words:
        h = _splitmix64((h + (w & _MASK64) + _GAMMA) & _MASK64)
    return h


def _int64(word: int) -> int:
    """The same 64 bits as a signed int64 (torch has no uint64 arithmetic)."""
    word &= _MASK64
    return word - (1 << 64) if word >> 63 else word


def _shr(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 `z` (torch's >> is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _splitmix64_t(z: torch.Tensor) -> torch.Tensor:
    """`_splitmix64` on int64 tensors: multiplication wraps modulo 2^64 as on uint64."""
    z = (z ^ _shr(z, 30)) * _int64(_MUL1)
    z = (z ^ _shr(z, 27)) * _int64(_MUL2)
    return z ^ _shr(z, 31)


def mix64_tensor(*words: int | torch.Tensor) -> torch.Tensor:
    """`mix64` elementwise over int64 tensors (broadcasting); the bits of mix64 on the same words."""
    h = torch.zeros((), dtype=torch.int64, device=next((w.device for w in words if torch.is_tensor(w)), None))
    for w in words:
        h = _splitmix64_t(h + (w if torch.is_tensor(w) else _int64(w)) + _int64(_GAMMA))
    return h


def fingerprint(t: torch.Tensor) -> torch.Tensor:
    """0-d int64: the sum of the float32 bit patterns of `t` (exact, order-independent)."""
    return t.detach().float().contiguous().view(torch.int32).sum(dtype=torch.int64)


def stream_noise(seed: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """float32 U[0, 1) (multiples of 2^-24): draw number `counter` (int64, 0-based) of the
    SplitMix64 stream `seed`, elementwise with broadcasting; the top 24 bits of each output."""
    z = _splitmix64_t(seed + (counter + 1) * _int64(_GAMMA))
    return _shr(z, 40).float() * 2.0**-24


def uniform_noise(shape: torch.Size | tuple[int, ...], *, key: int, salt: torch.Tensor) -> torch.Tensor:
    """float32 U[0, 1) draws of `shape` on salt's device, a function of (key, salt)."""
    counter = torch.arange(math.prod(shape), device=salt.device).view(shape)
    return stream_noise(mix64_tensor(key, salt), counter)

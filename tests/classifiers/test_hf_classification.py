"""`kind: hf-classification`: released multi-class classifiers (NeMo Curator's quality classifier:
High/Medium/Low) score the expected label value. Models are tiny, random, built here and saved
in both released layouts: `BertForSequenceClassification` and NeMo's encoder + first-token head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from safetensors.torch import save_file

from classifiers.embedding_classifier import HFClassificationClassifier, label_values
from classifiers.ensemble import assign_buckets, quality_levels
from classifiers.stage import ClassifierSpec, ClassifyConfig, ClassifyStage, cached_classifier, load_classifier
from classifiers.thresholds import ClassifierThresholds, ScoreSummary

LABELS = {0: "High", 1: "Medium", 2: "Low"}  # NeMo Curator's quality classifier's id2label
MAX_LENGTH = 64


def tiny_bert_config(vocab_size: int, **labels: object):
    from transformers import BertConfig

    # BERT's 0.02 init gives near-uniform label probabilities everywhere; 0.5 makes documents differ.
    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128, initializer_range=0.5, **labels)


def save_tokenizer(texts: list[str], out: Path):
    """A 600-word WordPiece tokenizer (BERT's normalisation and special tokens) trained on `texts`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials,
                                                                   show_progress=False))
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", wordpiece.token_to_id("[CLS]")),
                                                 ("[SEP]", wordpiece.token_to_id("[SEP]"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    tokenizer.save_pretrained(out)
    return tokenizer


@pytest.fixture(scope="module")
def texts(labelled: pa.Table) -> list[str]:
    return labelled["text"].to_pylist()


@pytest.fixture(scope="module")
def quality_dir(tmp_path_factory, texts: list[str]) -> Path:
    """A `BertForSequenceClassification` with NeMo's quality labels, as `save_pretrained` writes it."""
    from transformers import BertForSequenceClassification

    out = tmp_path_factory.mktemp("quality-classifier")
    tokenizer = save_tokenizer(texts[:200], out)
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(len(tokenizer), id2label=LABELS,
                                                           label2id={v: k for k, v in LABELS.items()}))
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def nemo_dir(tmp_path_factory, texts: list[str]) -> Path:
    """NeMo Curator's layout: config.json {base_model, fc_dropout, id2label}, weights `model.*` + `fc.*`,
    and the encoder's own config.json in `base/` (base_model names it, relative to the directory)."""
    from transformers import BertModel

    out = tmp_path_factory.mktemp("nemo-quality-classifier")
    tokenizer = save_tokenizer(texts[:200], out)
    encoder_config = tiny_bert_config(len(tokenizer))
    encoder_config.save_pretrained(out / "base")
    torch.manual_seed(1)
    encoder, fc = BertModel(encoder_config), torch.nn.Linear(encoder_config.hidden_size, len(LABELS))
    torch.nn.init.normal_(fc.weight, std=encoder_config.initializer_range)
    weights = {f"model.{k}": v for k, v in encoder.state_dict().items()} | {f"fc.{k}": v for k, v in fc.state_dict().items()}
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out / "model.safetensors"))
    config = {"base_model": "base", "fc_dropout": 0.2, "id2label": {str(k): v for k, v in LABELS.items()},
              "label2id": {v: k for k, v in LABELS.items()}}
    (out / "config.json").write_text(json.dumps(config))
    return out


def softmax_expectation(logits_NL: np.ndarray, values_L: list[float]) -> np.ndarray:
    p_NL = np.exp(logits_NL - logits_NL.max(axis=1, keepdims=True))
    return (p_NL / p_NL.sum(axis=1, keepdims=True)) @ np.asarray(values_L, np.float64)


def reference_logits(directory: Path, texts: list[str]) -> np.ndarray:
    """The model's logits, one unpadded document at a time, as transformers' own pipeline computes them."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    with torch.inference_mode():
        return np.concatenate([model(**tokenizer(t, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"))
                               .logits.double().numpy() for t in texts])


def spec(directory: Path, **options: object) -> ClassifierSpec:
    return ClassifierSpec(name="quality", path=str(directory), max_length=MAX_LENGTH, batch_size=3, **options)


def test_auto_kind_follows_the_number_of_labels(quality_dir: Path, nemo_dir: Path, tmp_path: Path):
    assert spec(quality_dir).resolved_kind() == "hf-classification"
    assert spec(nemo_dir).resolved_kind() == "hf-classification"
    config = json.loads((quality_dir / "config.json").read_text())
    for name, change in (("one_label", {"id2label": {"0": "score"}, "label2id": {"score": 0}}),
                         ("regression", {"problem_type": "regression"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config | change))
        assert spec(tmp_path / name).resolved_kind() == "hf-regression"  # FineWeb-Edu's layout, as before


def test_score_is_the_expected_label_value(quality_dir: Path, texts: list[str]):
    docs = texts[:7]
    classifier = load_classifier(spec(quality_dir))
    assert isinstance(classifier, HFClassificationClassifier) and classifier.labels == ["High", "Medium", "Low"]
    scores = classifier.score(docs)  # three length-sorted, padded batches
    assert scores.dtype == np.float32 and scores.shape == (7,)
    logits = reference_logits(quality_dir, docs)
    # High/Medium/Low are valued 2/1/0 by name, though High comes first in id2label
    np.testing.assert_allclose(scores, softmax_expectation(logits, [2, 1, 0]), rtol=0, atol=1e-6)
    assert scores.max() - scores.min() > 0.2  # the labels' probabilities differ between documents
    assert classifier.default_threshold == 1.0
    assert classifier.score([]).shape == (0,)


def test_label_weights_set_each_labels_value(quality_dir: Path, texts: list[str]):
    docs = texts[7:12]
    logits = reference_logits(quality_dir, docs)
    for weights in ({"High": 2, "Medium": 1, "Low": 0}, {"Low": 0.0, "High": 1.0, "Medium": 0.0},
                    {"High": 10, "Medium": 5, "Low": -1}):
        classifier = load_classifier(spec(quality_dir, label_weights=weights))
        expected = softmax_expectation(logits, [weights[label] for label in ("High", "Medium", "Low")])
        np.testing.assert_allclose(classifier.score(docs), expected, rtol=0, atol=1e-5)
    # the default equals High=2, Medium=1, Low=0; High=0, Medium=1, Low=2 reverses it: the two sum to 2
    default = load_classifier(spec(quality_dir)).score(docs)
    reversed_ = load_classifier(spec(quality_dir, label_weights={"High": 0, "Medium": 1, "Low": 2})).score(docs)
    np.testing.assert_allclose(default, softmax_expectation(logits, [2, 1, 0]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(default + reversed_, 2.0, atol=1e-6)


def test_default_values_other_label_sets_by_position():
    assert label_values(["bad", "ok", "good"], None).tolist() == [0.0, 1.0, 2.0]
    assert label_values(["LOW", "High", "medium"], None).tolist() == [0.0, 2.0, 1.0]
    assert label_values(["High", "Low", "spam"], None).tolist() == [0.0, 1.0, 2.0]  # not only level names


@pytest.mark.parametrize(("weights", "message"), [
    ({"Hgh": 2, "Medium": 1, "Low": 0}, "unknown ['Hgh'], missing ['High']"),
    ({"High": 2, "Medium": 1}, "unknown [], missing ['Low']"),
])
def test_label_weights_must_name_the_models_labels(quality_dir: Path, weights: dict, message: str):
    with pytest.raises(ValueError) as err:
        load_classifier(spec(quality_dir, label_weights=weights))
    assert str(err.value) == (f"classifier 'quality': label_weights must value every label of the model: {message}; "
                              "the model's labels are ['High', 'Medium', 'Low']")


def test_label_weights_only_for_classification(quality_dir: Path, tmp_path: Path):
    config = json.loads((quality_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"id2label": {"0": "score"}, "label2id": {"score": 0}}))
    with pytest.raises(ValueError, match=f"^classifier 'quality': label_weights is for hf-classification models; "
                                         f"{tmp_path} is hf-regression$"):
        load_classifier(spec(tmp_path, label_weights={"score": 1}))


def test_nemo_curator_layout_scores_like_its_first_token_head(nemo_dir: Path, texts: list[str]):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertModel

    docs = texts[12:18]
    weights = {"High": 2, "Medium": 1, "Low": 0}
    classifier = load_classifier(spec(nemo_dir, label_weights=weights))
    # NeMo's QualityModel: softmax(fc(dropout(encoder(ids, mask).last_hidden_state))[:, 0]), dropout off at eval.
    state = load_file(str(nemo_dir / "model.safetensors"))
    encoder = BertModel(BertConfig.from_pretrained(nemo_dir / "base")).eval()
    encoder.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    tokenizer = AutoTokenizer.from_pretrained(nemo_dir)
    with torch.inference_mode():
        first = [encoder(**tokenizer(t, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"))
                 .last_hidden_state[:, 0].double() for t in docs]
        logits = (torch.cat(first) @ state["fc.weight"].double().T + state["fc.bias"].double()).numpy()
    np.testing.assert_allclose(classifier.score(docs), softmax_expectation(logits, [2, 1, 0]), rtol=0, atol=1e-6)


def test_nemo_layout_needs_a_local_base_model(nemo_dir: Path, tmp_path: Path):
    for file in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / file).write_bytes((nemo_dir / file).read_bytes())
    config = json.loads((tmp_path / "config.json").read_text()) | {"base_model": "microsoft/deberta-v3-base"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="base_model 'microsoft/deberta-v3-base' is not a local model directory"):
        load_classifier(spec(tmp_path))


def test_classify_stage_buckets_the_expected_values(quality_dir: Path, labelled: pa.Table):
    table = labelled.select(["id", "text", "source"]).slice(0, 40)
    weights = {"High": 2.0, "Medium": 1.0, "Low": 0.0}
    config = ClassifyConfig(classifiers=(spec(quality_dir, label_weights=weights),))
    # Specs with equal label_weights are one cache entry: one model per worker, however many shards.
    assert cached_classifier(config.classifiers[0]) is cached_classifier(spec(quality_dir, label_weights=dict(weights)))
    scores = load_classifier(config.classifiers[0]).score(table["text"].to_pylist())
    n_bytes = pc.binary_length(table["text"]).to_numpy()
    thresholds = {"quality": ClassifierThresholds.from_summary("quality", "hf-classification", "",
                                                               ScoreSummary.of(scores, n_bytes))}

    out = ClassifyStage(config, thresholds).run(table)
    assert out.num_rows == 40 and out["id"].to_pylist() == table["id"].to_pylist()
    assert out["score_quality"].to_pylist() == scores.tolist()
    buckets = assign_buckets(scores, thresholds["quality"].cuts)
    assert out["bucket_quality"].to_pylist() == out["quality_bucket"].to_pylist() == buckets.tolist()
    assert out["quality_level"].to_pylist() == quality_levels(buckets).tolist()
    assert len(set(buckets.tolist())) >= 15  # a continuous score spreads over the buckets; an arg-max label would not

"""LLM annotation as `ccforge classifiers annotate` and the quick start run it.

The quick start's annotator is the stub OpenAI-compatible server (`flows.demo.stub_server`):
nothing can be downloaded, and the rephrase stage's tiny demo model cannot be made to write
"Educational score: N" reliably at the demo's budget. Trained for 60 steps on the documents plus
answers in that format (with assistant prefill or without), it ended between 1 % and 100 % of its
answers with a parseable score, from the seed alone (trials for issue 18). The stub answers every
prompt with a few words and a score that is a hash of the prompt: noise. The run shows the path
of a real annotation through the HTTP backend (prompt, concurrent requests, parsing, accounting,
resumption, a regression head trained on the scores and put in the ensemble), not the judgement
of an annotator.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from classifiers.annotate import AnnotateConfig, AnnotateStats, run_annotate
from classifiers.embedding_classifier import EmbeddingTrainConfig
from classifiers.stage import ClassifierSpec
from classifiers.train import TrainSpec, train_one
from classifiers.training_set import TRAIN, read_labelled, split
from curation.io.readers import expand_inputs
from curation.io.writers import write_table_atomic
from flows.engine.stage_dir import fingerprint_files


def run_annotation(config: AnnotateConfig, inputs: list[str], output: str | Path,
                   progress: Callable[[str], None] = print) -> AnnotateStats:
    """`run_annotate` over the files `inputs` expand to; the chunks' key covers their identity and the model's files."""
    files = expand_inputs(inputs)
    return run_annotate(config, files, output, fingerprint=fingerprint_files(files + config.model_files()),
                        progress=progress)


#: The quick start annotates this many documents of the classifier training set.
QUICKSTART_ANNOTATE_DOCS = 128
#: The third classifier of the quick start: a MiniLM regression head on the annotations, as `edu_minilm` is on fixed scores.
ANNOTATED_CLASSIFIER = TrainSpec(name="edu_llm", kind="embedding", embedding=EmbeddingTrainConfig(max_length=128))


def quickstart_annotated_classifier(classifiers_dir: Path, workdir: Path,
                                    progress: Callable[[str], None] = print) -> ClassifierSpec:
    """Annotate a sample of the classifier training set through the stub server, train
    `ANNOTATED_CLASSIFIER` on the scores into `classifiers_dir` and return its spec."""
    from flows.demo.stub_server import StubServer

    labelled = read_labelled(Path(classifiers_dir) / "training_set.parquet")
    rows = sorted(random.Random(0).sample(range(labelled.num_rows), min(QUICKSTART_ANNOTATE_DOCS, labelled.num_rows)))
    output = Path(workdir) / "annotate"
    write_table_atomic(labelled.take(rows).select(["id", "text", "source"]), output / "sample.parquet")
    with StubServer() as server:
        config = AnnotateConfig(backend="http", http={"endpoint": server.url, "model": "stub", "concurrency": 8})
        run_annotation(config, [str(output / "sample.parquet")], output, progress)
    annotated = read_labelled(output / "training_set.parquet")
    return train_one(ANNOTATED_CLASSIFIER, split(annotated, TRAIN), Path(classifiers_dir))

"""The train YAML the pipeline writes into its workdir holds from any directory: `ccforge train
demo-workdir/train.yaml` finds the same mixture and run directory wherever it is started."""

from __future__ import annotations

from pathlib import Path

import yaml

from flows.pipeline import TrainingSettings, train_config
from training.trainer.config import load_train_config


def test_train_yaml_paths_do_not_depend_on_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    workdir = Path("demo-workdir")  # as `ccforge pipeline --workdir demo-workdir` gives it
    mixture = workdir / "data" / "mixture.yaml"
    mixture.parent.mkdir(parents=True)
    mixture.write_text("seq_len: 64\ncomponents: {}\n")
    settings = TrainingSettings(vocab_size=512, train={"model": {"preset": "tiny"}, "max_steps": 3})
    (workdir / "train.yaml").write_text(yaml.safe_dump(train_config(settings, mixture, workdir)))
    runs = TrainingSettings(train={"out": "runs/first"})  # a run directory the user chose, relative to here
    (workdir / "runs.yaml").write_text(yaml.safe_dump(train_config(runs, mixture, workdir)))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_train_config(tmp_path / "demo-workdir" / "train.yaml")
    assert Path(config.data.mixture) == tmp_path / "demo-workdir" / "data" / "mixture.yaml"
    assert Path(config.data.mixture).read_text().startswith("seq_len: 64")
    assert Path(config.out) == tmp_path / "demo-workdir" / "train"
    assert config.model.overrides["vocab_size"] == 512 and config.max_steps == 3
    assert Path(load_train_config(tmp_path / "demo-workdir" / "runs.yaml").out) == tmp_path / "runs" / "first"

from pathlib import Path

import yaml

from classifiers.training_set import write_training_set
from flows.cli import main


def test_train_and_eval_commands(tmp_path: Path, labelled, capsys):
    write_training_set(labelled, tmp_path / "set.parquet")
    config = {"data": str(tmp_path / "set.parquet"), "output_dir": str(tmp_path / "models"),
              "classifiers": [{"name": "ft", "kind": "fasttext", "fasttext": {"dim": 32, "bucket": 100000}}]}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["classifiers", "train", str(tmp_path / "train.yaml")]) == 0
    assert (tmp_path / "models" / "ft.bin").exists() and (tmp_path / "models" / "ensemble.json").exists()
    assert main(["classifiers", "eval", "--model", str(tmp_path / "models"), "--data", str(tmp_path / "set.parquet")]) == 0
    assert "| ft | 0.5 |" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys):
    (tmp_path / "bad.yaml").write_text("classifiers: [{name: ft, kind: fasttext, fasttext: {epochs: 3}}]\n")
    assert main(["classifiers", "train", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ccforge classifiers: error: ") and "epochs" in err and "\n" not in err
    assert main(["classifiers", "score", "--model", str(tmp_path / "nope.bin"), "--input", str(tmp_path),
                 "--output", str(tmp_path / "o")]) == 2
    assert "nope.bin: no such model file or directory" in capsys.readouterr().err

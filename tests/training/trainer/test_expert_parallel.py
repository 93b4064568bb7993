"""Expert parallelism on 2 CPU ranks (gloo) against the same run without it: EP=2 gives EP=1's
losses and gradient norms, resumes exactly, checkpoints continue at the other EP size, and an
EP=2 checkpoint exports to exactly what EP=1 loads from it; `ccforge train` and the pipeline's
`pretrain` flow run EP=2; the dispatch alone computes the plain layer bit for bit; and the
config's one-line errors.

The 2-rank runs share one torchrun job (this file run as a script, `_worker`), since each job
pays seconds of start-up. Parameters are float32 (`param_dtype: fp32`): with bf16 ones the
experts' gradients are rounded to bf16 once over the EP group's tokens instead of once per rank,
which moves EP=2 from EP=1 by bf16 rounding rather than by float32 summation order.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from training.trainer.config import TrainConfigError, load_train_config

REPO = Path(__file__).resolve().parents[3]
CCFORGE = str(Path(sys.executable).parent / "ccforge")
STEPS = 10


def _losses(run: Path, key: str = "loss") -> list[float]:
    return [json.loads(line)[key] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _worker(root: Path) -> None:
    """Rank body of the torchrun job: every in-process run the tests below read."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from training.trainer.distributed import close_distributed
    from training.trainer.loop import Trainer

    def trainer(expert_parallel: int, out: str, *, resume: bool = False) -> Trainer:
        cfg = load_train_config(root / "train.yaml", {"parallel.expert_parallel": expert_parallel,
                                                      "out": str(root / out)})
        return Trainer(cfg, resume=resume)

    trainer(1, "ep1").run()
    trainer(2, "ep2").run()
    trainer(2, "staged").run(5)
    trainer(2, "staged", resume=True).run()
    if dist.get_rank() == 0:  # step-5 checkpoints as the newest of runs at the other EP size
        shutil.copytree(root / "staged/checkpoints/step-00000005", root / "down/checkpoints/step-00000005")
        shutil.copytree(root / "ep1/checkpoints/step-00000005", root / "up/checkpoints/step-00000005")
    dist.barrier()
    down = trainer(1, "down", resume=True)
    loaded = get_model_state_dict(down.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.get_rank() == 0:
        torch.save(loaded, root / "ep2-checkpoint-at-ep1.pt")
    down.run()
    trainer(2, "up", resume=True).run()
    close_distributed()


@pytest.fixture(scope="module")
def ep_runs(tmp_path_factory: pytest.TempPathFactory, token_dir: Path) -> Path:
    """10 steps of the tiny MoE preset (8 experts, top-2) on 2 ranks at EP=1 and EP=2, 2
    micro-batches a step, checkpoints every 5; an EP=2 run stopped at 5 and resumed; EP=2's
    step-5 checkpoint resumed at EP=1 ("down") and EP=1's at EP=2 ("up")."""
    root = tmp_path_factory.mktemp("expert-parallel")
    shards = str(token_dir / "*.parquet")
    (root / "mixture.yaml").write_text(yaml.safe_dump({"seq_len": 64, "seed": 5, "components": {
        "handbook": {"paths": shards, "sources": ["handbook"], "weight": 0.5},
        "postgres": {"paths": shards, "sources": ["postgres"], "weight": 0.5}}}))
    (root / "train.yaml").write_text(yaml.safe_dump({
        "model": {"preset": "tiny", "overrides": {"vocab_size": 2048}},
        "data": {"mixture": str(root / "mixture.yaml")},
        "batch": {"global_batch_tokens": 512, "micro_batch_size": 2},
        "schedule": {"warmup_steps": 2},
        "parallel": {"param_dtype": "fp32"},
        "max_steps": STEPS,
        "checkpoint": {"every_steps": 5, "keep_last": 3},
        "logging": {"progress_bar": False, "tensorboard": False},
    }))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    job = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          __file__, str(root)], capture_output=True, text=True, env=env, timeout=900)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    return root


@pytest.mark.slow
def test_ep2_gives_the_losses_of_ep1(ep_runs: Path) -> None:
    ep1, ep2 = _losses(ep_runs / "ep1"), _losses(ep_runs / "ep2")
    assert len(ep1) == len(ep2) == STEPS and ep2[-1] < ep2[0] - 0.5
    assert max(abs(a - b) for a, b in zip(ep1, ep2)) < 1e-5
    # the global gradient norm includes the expert shards, at EP=1's scale
    norms = zip(_losses(ep_runs / "ep1", "grad_norm"), _losses(ep_runs / "ep2", "grad_norm"))
    assert max(abs(a / b - 1) for a, b in norms) < 1e-5


@pytest.mark.slow
def test_ep2_resumes_exactly(ep_runs: Path) -> None:
    assert _losses(ep_runs / "staged") == _losses(ep_runs / "ep2")


@pytest.mark.slow
@pytest.mark.parametrize(("run", "saved_by"), [("down", "ep2"), ("up", "ep1")])
def test_checkpoints_continue_at_the_other_ep_size(ep_runs: Path, run: str, saved_by: str) -> None:
    continued, straight = _losses(ep_runs / run), _losses(ep_runs / saved_by)
    assert len(continued) == STEPS - 5
    assert max(abs(a - b) for a, b in zip(continued, straight[5:])) < 1e-5


@pytest.mark.slow
def test_export_of_an_ep2_checkpoint_is_what_ep1_loads(ep_runs: Path, tmp_path: Path) -> None:
    from training.model import load_hf
    from training.trainer.export import export_hf

    export_hf(ep_runs / "staged/checkpoints/step-00000005", tmp_path / "hf", dtype=torch.float32)
    exported = load_hf(tmp_path / "hf", dtype=torch.float32).state_dict()
    loaded = torch.load(ep_runs / "ep2-checkpoint-at-ep1.pt")
    assert exported.keys() == loaded.keys()
    experts = [name for name in exported if name.endswith("experts.up_proj")]
    assert len(experts) == 3 and exported[experts[0]].shape == (8, 128, 128)  # every expert, gathered
    assert all(torch.equal(exported[name], loaded[name]) for name in exported)


def _ep2_config(ep_runs: Path, out: Path) -> Path:
    config = out.with_suffix(".yaml")
    config.write_text(yaml.safe_dump(yaml.safe_load((ep_runs / "train.yaml").read_text())
                                     | {"parallel": {"param_dtype": "fp32", "expert_parallel": 2}, "out": str(out)}))
    return config


@pytest.mark.slow
def test_ccforge_train_with_ep2(ep_runs: Path, tmp_path: Path) -> None:
    run = subprocess.run([CCFORGE, "train", str(_ep2_config(ep_runs, tmp_path / "run")), "--nproc", "2"],
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert _losses(tmp_path / "run") == _losses(ep_runs / "ep2")


@pytest.mark.slow
def test_pipeline_training_with_ep2(ep_runs: Path, tmp_path: Path, prefect_api: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's training tail (the `pretrain` flow: torchrun, then export-hf) at EP=2."""
    from safetensors.torch import load_file

    from flows.pretrain import pretrain
    from training.trainer.export import export_hf

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = pretrain(str(_ep2_config(ep_runs, tmp_path / "run")), nproc=2, export_to=str(tmp_path / "hf"))
    assert result.steps == STEPS and _losses(tmp_path / "run") == _losses(ep_runs / "ep2")
    export_hf(ep_runs / "ep2", tmp_path / "hf-ep2")
    flow, direct = load_file(tmp_path / "hf" / "model.safetensors"), load_file(tmp_path / "hf-ep2" / "model.safetensors")
    assert flow.keys() == direct.keys() and all(torch.equal(flow[k], direct[k]) for k in flow)


def test_dispatch_and_combine_compute_the_plain_layer_exactly() -> None:
    """The dispatch path on a one-rank group, in bf16: sorting, local expert ids, the all-to-all
    round trip and the float32 combine give the unsharded layer's output and gradients bit for bit."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    from training.model import get_preset
    from training.model.moe import MoE
    from training.trainer.distributed import close_distributed, init_distributed
    from training.trainer.expert_parallel import all_to_all_bytes, apply_expert_parallel, expert_mesh

    torch.manual_seed(0)
    layer = MoE(get_preset("tiny", moe_latent_size=64))
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.3)
    layer = layer.bfloat16()
    plain = copy.deepcopy(layer)
    init_distributed()
    try:
        apply_expert_parallel(layer, expert_mesh(torch.device("cpu"), 1, 1), MixedPrecisionPolicy())
        assert type(layer.experts.up_proj).__name__ == "DTensor"
        x = torch.randn(3, 20, 128, dtype=torch.bfloat16, requires_grad=True)
        x_plain = x.detach().clone().requires_grad_()
        y, y_plain = layer(x), plain(x_plain)
        assert y.dtype == torch.bfloat16 and torch.equal(y, y_plain)
        (y.float() ** 2).sum().backward()
        (y_plain.float() ** 2).sum().backward()
        assert torch.equal(x.grad, x_plain.grad)
        for name in ("up_proj", "down_proj"):
            grad = getattr(layer.experts, name).grad.full_tensor()
            assert grad.abs().sum() > 0 and torch.equal(grad, getattr(plain.experts, name).grad)
        assert torch.equal(layer.gate.weight.grad, plain.gate.weight.grad)
        assert all_to_all_bytes(layer) == 0  # one rank: nothing leaves it
    finally:
        close_distributed()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"parallel.expert_parallel": 0}, "parallel.expert_parallel: Input should be greater than or equal to 1"),
    ({"parallel.expert_parallel": 3}, "parallel.expert_parallel: 3 must divide the model's n_routed_experts 8"),
    ({"parallel.expert_parallel": 2, "model.overrides": {"pattern": "M*-"}},
     "parallel.expert_parallel: 2 needs a model with MoE layers ('M*-' has none); set it to 1"),
])
def test_config_errors(overrides: dict, message: str) -> None:
    with pytest.raises(TrainConfigError) as err:
        load_train_config(None, {"data.mixture": "mixture.yaml", **overrides})
    assert str(err.value) == f"config: {message}"


def test_expert_parallel_must_divide_the_world_size(train_config) -> None:
    from training.trainer.distributed import close_distributed
    from training.trainer.loop import Trainer

    cfg = load_train_config(train_config(), {"parallel.expert_parallel": 2})
    assert cfg.parallel.expert_parallel == 2 and load_train_config(train_config()).parallel.expert_parallel == 1
    try:
        with pytest.raises(TrainConfigError, match=r"^parallel.expert_parallel 2 must divide the world size 1$"):
            Trainer(cfg)
    finally:
        close_distributed()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))

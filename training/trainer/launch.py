"""How `ccforge train` starts processes: one in this process, more through torchrun.

torchrun (torch.distributed.run) sets RANK / WORLD_SIZE / MASTER_ADDR for every process;
multi-node runs pass --nnodes and a rendezvous endpoint (c10d) and run the same command on
every node. Each process gets cores / processes threads (unless OMP_NUM_THREADS is set);
a direct run uses all cores.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class LaunchSpec:
    nproc: int = 1
    nnodes: str = "1"  # "2" or an elastic range "1:4"
    node_rank: int | None = None
    rdzv_endpoint: str | None = None  # host:port of the c10d rendezvous, for more than one node
    rdzv_id: str = "ccforge"

    @property
    def single_process(self) -> bool:
        return self.nproc == 1 and self.nnodes == "1"


def torchrun_command(spec: LaunchSpec, config: str, *, overrides: dict, resume: bool,
                     stop_after: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={spec.nproc}", f"--nnodes={spec.nnodes}"]
    if spec.rdzv_endpoint:
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={spec.rdzv_endpoint}", f"--rdzv-id={spec.rdzv_id}"]
    else:
        cmd += ["--standalone"]
    if spec.node_rank is not None:
        cmd += [f"--node-rank={spec.node_rank}"]
    cmd += ["-m", "training.trainer.main", config, "--set", json.dumps(overrides)]
    if resume:
        cmd.append("--resume")
    if stop_after is not None:
        cmd += ["--stop-after", str(stop_after)]
    return cmd


def _thread_env(cmd: list[str]) -> dict[str, str]:
    """Split this node's cores between its processes (torchrun would give each one thread)."""
    env = dict(os.environ)
    nproc = next(int(arg.split("=", 1)[1]) for arg in cmd if arg.startswith("--nproc-per-node="))
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env


def stop_with_parent(signum: int = signal.SIGTERM) -> None:
    """Have the kernel send `signum` to this process when its parent dies, even by SIGKILL. Called
    in the torchrun child before exec and by every rank torchrun starts: a killed flow (or a killed
    torchrun, whose ranks run in sessions of their own) leaves no training behind to race its rerun
    over the same checkpoints. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signum)


def run_torchrun(cmd: list[str], on_line: Callable[[str], None] = print) -> tuple[int, list[str]]:
    """Run torchrun, passing every output line to `on_line` as it comes. Returns the exit code
    and, for a failure, the lines that say why: the ranks' own one-line errors
    ("ccforge train: error: ...") if any, else the last lines of output."""
    tail: deque[str] = deque(maxlen=200)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          env=_thread_env(cmd), preexec_fn=stop_with_parent) as proc:
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            on_line(tail[-1])
        code = proc.wait()
    errors = [line.strip() for line in tail if "error:" in line]
    return code, (errors or [line.strip() for line in tail if line.strip()][-5:]) if code else []

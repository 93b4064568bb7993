"""The commands a newcomer copies from README.md and docs/quickstart.md work as written after
`make demo`, and every relative link in the docs names a file that exists.

Convention (docs/development.md, "Documented commands"): every line of a ```bash block in those
two pages that starts with `ccforge` is run, in order, from a directory where `demo-workdir` is a
finished quick start and `examples` is the repository's; ```sh blocks are not run."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ccforge_processes import ccforge_env

REPO = Path(__file__).resolve().parents[1]
NEWCOMER_PAGES = ("README.md", "docs/quickstart.md")

#: Documented commands the test runs shorter, and why: each key must be a documented command.
SHORTENED = {
    # 20 steps of 16,384 tokens take minutes on 2 shared cores; 2 steps still write a checkpoint
    # (the trainer saves at the last step), which the documented `export-hf` reads next.
    "ccforge train examples/train.yaml --max-steps 20": "ccforge train examples/train.yaml --max-steps 2",
    # the pipeline's 60 steps are 2 of its 3 minutes; 4 steps run every stage of it all the same
    "ccforge pipeline examples/pipeline.yaml --workdir my-run":
        "ccforge pipeline examples/pipeline.yaml --workdir my-run --max-steps 4",
}

FENCE = re.compile(r"^\s*```(\S*)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def normalized(command: str) -> str:
    """The command without its trailing comment and with canonical quoting (the key of SHORTENED)."""
    return shlex.join(shlex.split(command, comments=True))


def fenced_lines(text: str) -> list[tuple[str, str | None]]:
    """Each line of a Markdown text with the info string of the code block it is in (None outside)."""
    out, fence = [], None
    for line in text.splitlines():
        opened = FENCE.match(line)
        if opened:
            fence = opened.group(1) if fence is None else None
            continue
        out.append((line, fence))
    return out


def bash_lines(text: str) -> list[str]:
    """The lines of the ```bash blocks of a Markdown text, with backslash continuations joined."""
    lines, pending = [], ""
    for line, fence in fenced_lines(text):
        if fence != "bash":
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        lines.append(pending + line.strip())
        pending = ""
    return lines


def documented_commands(pages: tuple[str, ...] = NEWCOMER_PAGES) -> list[str]:
    """Every `ccforge` line of the pages' ```bash blocks, in page order, each once."""
    commands: list[str] = []
    for page in pages:
        for line in bash_lines((REPO / page).read_text()):
            is_new = normalized(line) not in {normalized(c) for c in commands}
            if (line.startswith("ccforge ") or line.startswith(".venv/bin/ccforge ")) and is_new:
                commands.append(line)
    return commands


def test_bash_blocks_are_parsed_with_continuations_and_other_fences_left_out():
    text = ("```bash\nmake demo\nccforge report demo-workdir   # again\nccforge stage fuzzy-dedup --input a \\\n"
            "    --output b\n```\n\n```sh\nccforge schedule x.yaml --cron '0 3 * * *'\n```\n")
    assert bash_lines(text) == ["make demo", "ccforge report demo-workdir   # again",
                                "ccforge stage fuzzy-dedup --input a --output b"]
    assert normalized(bash_lines(text)[1]) == "ccforge report demo-workdir"


def test_newcomer_pages_document_the_commands_the_test_runs():
    commands = [normalized(c) for c in documented_commands()]
    assert "ccforge pipeline examples/pipeline.yaml --workdir my-run" in commands
    assert "ccforge report demo-workdir" in commands
    for documented in SHORTENED:
        assert documented in commands, f"SHORTENED names {documented!r}, which no newcomer page documents any more"


def test_every_relative_link_in_the_docs_names_a_file():
    # docs/reference/configuration.md is written by this hook at every `mkdocs build`
    generated = {REPO / "docs/reference/configuration.md": REPO / "docs/hooks/config_reference.py"}
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    checked, broken = 0, []
    for page in pages:
        outside_code = [line for line, fence in fenced_lines(page.read_text()) if fence is None]
        for target in LINK.findall("\n".join(outside_code)):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # a URL, or an anchor on the same page (mkdocs --strict checks anchors)
            path = (page.parent / target.split("#")[0]).resolve()
            checked += 1
            if not (path.exists() or (path in generated and generated[path].is_file())):
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert checked > 30 and not broken, broken


@pytest.fixture(scope="module")
def newcomer_dir(quickstart_run, tmp_path_factory) -> Path:
    """A stand-in for the repository root after `make demo`: `demo-workdir` (the session's quick
    start) and `examples`, and nothing a command could have left behind."""
    root = tmp_path_factory.mktemp("newcomer")
    (root / "demo-workdir").symlink_to(quickstart_run.workdir, target_is_directory=True)
    (root / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    return root


def _ccforge_bin(tmp: Path) -> Path:
    """The directory to put first on PATH so that `ccforge` is this environment's: the venv's bin,
    or a wrapper around `python -m flows.cli` when the console script is not installed."""
    here = Path(sys.executable).parent
    if (here / "ccforge").exists():
        return here
    wrapper = tmp / "bin" / "ccforge"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m flows.cli "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return wrapper.parent


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("command", documented_commands(), ids=normalized)
def test_documented_command_works_after_make_demo(command: str, newcomer_dir: Path):
    run = SHORTENED.get(normalized(command), command)
    if run.startswith(".venv/bin/"):
        run = run[len(".venv/bin/"):]
    env = dict(ccforge_env(), PATH=f"{_ccforge_bin(newcomer_dir)}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(["bash", "-c", run], cwd=newcomer_dir, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f"`{run}` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

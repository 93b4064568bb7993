"""`ccforge report` on a workdir made by the real stages: the curate flow on a small crawl of
real pages (with injected near-duplicates, a fastText classifier and a stub rephrase server),
the build_mixture flow on its output, and a metrics.jsonl in the trainer's format. Every number
in the report must equal the stats files, and every chart must be a PNG a browser can show."""

from __future__ import annotations

import base64
import glob
import gzip
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import LocalCluster
from PIL import Image
from prefect.artifacts import Artifact
from token_fixtures import HANDBOOK_EN, documents
from warc_fixtures import html_record, write_warc

from classifiers.fasttext_classifier import FastTextTrainConfig, train_fasttext
from classifiers.stage import ClassifierSpec, ClassifyConfig
from flows.demo.dedup_eval import inject_near_duplicates
from flows.demo.stub_server import StubServer
from flows.build_mixture import build_mixture
from flows.cli import main
from flows.config.curate import load_curate_config
from flows.curate import curate
from flows.report.summary import read_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write_crawl(crawl: Path, handbook_pages: dict[str, list[Path]]) -> None:
    """Real pages in three languages (a few twice, under mirror URLs), near-duplicate texts, a bad file."""
    crawl.mkdir()
    pages = [p for lang in ("en-US", "fr-FR", "de-DE") for p in handbook_pages[lang][20:30]]
    records = [html_record(p) for p in pages] + [html_record(p, url=f"https://mirror.example.org/{i}.html")
                                                 for i, p in enumerate(pages[:4])]
    write_warc(crawl / "part-0.warc.gz", records[0::2])
    write_warc(crawl / "part-1.warc.gz", records[1::2])
    originals = [t for t in documents(f"{HANDBOOK_EN}/*.html", limit=40, max_chars=6000) if len(t) > 2000][:20]
    injected = inject_near_duplicates(originals, fraction=0.5, seed=1)
    lines = [json.dumps({"id": f"near-{i}", "text": text}) for i, text in enumerate(injected.texts)]
    (crawl / "near.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    pq.write_table(pa.table({"id": ["p"], "body": ["no text column"]}), crawl / "wrong.parquet")


def _train_classifier(out: Path) -> Path:
    """A small fastText quality classifier: handbook text against licence texts."""
    positives = documents(f"{HANDBOOK_EN}/*.html", limit=60, max_chars=2000)
    negatives = [Path(p).read_text(errors="replace")[k:k + 2000]
                 for p in sorted(glob.glob("/usr/share/common-licenses/*")) for k in range(0, 20000, 2000)]
    negatives = [t for t in negatives if len(t) > 200]
    return train_fasttext(positives + negatives, ["hq"] * len(positives) + ["cc"] * len(negatives), out,
                          FastTextTrainConfig(dim=16, bucket=50_000, epoch=5))


def _write_metrics(run_dir: Path, steps: int = 12, step_tokens: int = 2048) -> None:
    """metrics.jsonl as training.trainer.metrics writes it; a run resumed from step 6 logs step 7 again."""
    run_dir.mkdir(parents=True)
    records = [{"step": s, "loss": 7.5 - 0.15 * s, "lr": 3e-4 * min(s, 4) / 4, "grad_norm": 0.9,
                "tokens": s * step_tokens, "tokens_per_s": 1000.0 + 10 * s, "step_seconds": step_tokens / (1000.0 + 10 * s),
                "skipped_steps": 0, "phase": 0, "expert_load_min": 0.5, "expert_load_max": 1.5,
                "expert_load_cv": 0.2, "mfu": 0.1} for s in range(1, steps + 1)]
    lost_step = records[6] | {"loss": 9.9}  # logged before the crash, never checkpointed
    lines = [json.dumps(r) for r in records[:6] + [lost_step] + records[6:]]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def run_workdir(tmp_path_factory, handbook_pages, prefect_api) -> Path:
    """WORKDIR in the pipeline layout: curation/, data/, train/, model-hf/."""
    root = tmp_path_factory.mktemp("report")
    workdir = root / "work"
    _write_crawl(root / "crawl", handbook_pages)
    classifier = _train_classifier(root / "fasttext_hq.bin")
    # one in-process worker: no worker start-up, and the crawl is small
    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    with StubServer() as server, cluster:
        config = load_curate_config(
            None, inputs=[{"path": str(root / "crawl")}], workdir=str(workdir / "curation"),
            dask={"scheduler": cluster.scheduler_address},
            classify=ClassifyConfig(classifiers=(ClassifierSpec(name="ft", path=str(classifier)),)),
            heuristics={"c4": {"filter_no_terminal_punct": False}},
            rephrase={"backend": "http", "http": {"endpoint": server.url, "model": "stub"},
                      "max_docs": 12})
        curate(config)
        build_mixture([str(workdir / "curation" / "curated"), str(workdir / "curation" / "rephrase")],
                      workdir / "data", vocab_size=512, seq_len=128, budget=12 * 2048, tokenizer_docs=200,
                      scheduler=cluster.scheduler_address)
    _write_metrics(workdir / "train")
    hf = workdir / "model-hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "nemotron_h"}))
    (hf / "model.safetensors").write_bytes(bytes(3_000_000))
    return workdir


def _stats(workdir: Path, *parts: str) -> dict:
    return json.loads(workdir.joinpath(*parts).read_text())


def _row(markdown: str, first_cell: str) -> list[str]:
    """The cells of the first table row whose first cell is `first_cell`."""
    match = re.search(rf"^\| {re.escape(first_cell)} \|(.*)\|$", markdown, re.MULTILINE)
    assert match, f"no row {first_cell!r}"
    return [c.strip() for c in match.group(1).split(" | ")]


def _section(markdown: str, title: str) -> str:
    start = markdown.index(f"## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:end if end > 0 else None]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def _html_images(html: str) -> list[bytes]:
    sources = re.findall(r'<img src="([^"]*)"', html)
    assert len(sources) == html.count("<img")
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    return [base64.b64decode(s.removeprefix("data:image/png;base64,"), validate=True) for s in sources]


def test_report_shows_every_part_of_the_run(run_workdir: Path, capsys) -> None:
    assert main(["report", str(run_workdir), "--prefect-artifact"]) == 0
    assert "report.html" in capsys.readouterr().out
    md = (run_workdir / "report.md").read_text()
    artifact = Artifact.get("run-report")
    assert artifact.type == "markdown" and artifact.data == "\n".join(
        line for line in md.splitlines() if not line.startswith("!["))
    titles = re.findall(r"^## (.+)$", md, re.MULTILINE)
    assert titles == ["Curation funnel", "Languages", "Heuristic drop reasons", "Near-duplicate clusters",
                      "Quality buckets", "Synthetic data", "Tokens and mixture", "Training", "Throughput",
                      "Input files that could not be read whole"]
    assert re.search(r"^- .*wrong\.parquet: no 'text' column", md, re.MULTILINE)

    stages = _stats(run_workdir, "curation", "stats.json")["stages"]
    assert [s["name"] for s in stages] == ["extract", "langid", "exact-dedup", "fuzzy-dedup", "classify",
                                           "heuristics", "rephrase"]
    funnel = _section(md, "Curation funnel")
    for stage in stages:
        cells = _row(funnel, stage["name"])
        assert cells[:2] == [f"{stage['docs_in']:,}", f"{stage['docs_out']:,}"]
        assert cells[3:5] == [f"{stage['bytes_in'] / 1e6:,.1f}", f"{stage['bytes_out'] / 1e6:,.1f}"]

    languages = stages[-2]["languages"]  # heuristics: the last stage with a language column
    for lang, count in languages.items():
        assert _row(_section(md, "Languages"), lang)[0] == f"{count:,}"

    heuristics = stages[5]["dropped"]
    assert heuristics, "the crawl should lose some pages to the heuristic rules"
    for reason, count in heuristics.items():
        assert _row(_section(md, "Heuristic drop reasons"), reason)[0] == f"{count:,}"

    clusters = _stats(run_workdir, "curation", "fuzzy-dedup", "clusters.json")
    fuzzy = _section(md, "Near-duplicate clusters")
    assert _row(fuzzy, "removed")[0] == f"{clusters['removed']:,}" == f"{stages[3]['dropped']['fuzzy_duplicate']:,}"
    sizes = {int(m[0]): int(m[1]) for m in re.findall(r"^\| (\d+) \| (\d+) \| \d+ \|$", fuzzy, re.MULTILINE)}
    assert sum(n * (size - 1) for size, n in sizes.items()) == clusters["removed"]
    assert sum(sizes.values()) == clusters["components"] and max(sizes) > 2

    quality = _stats(run_workdir, "curation", "classify", "quality.json")
    for level, counts in quality["levels"].items():
        assert _row(_section(md, "Quality buckets"), level)[0] == f"{counts['docs']:,}"
    for bucket in range(20):
        assert _row(_section(md, "Quality buckets"), str(bucket)) == [
            f"{quality['buckets'][name]['docs'][bucket]:,}" for name in ("ft", "ensemble")]

    synthetic = _stats(run_workdir, "curation", "rephrase", "stats.json")["rephrase"]
    assert synthetic["tasks"]
    for task, counts in synthetic["tasks"].items():
        assert _row(_section(md, "Synthetic data"), task)[:2] == [f"{counts['chunks']:,}", f"{counts['kept']:,}"]
    assert f"generated tokens: {synthetic['generated_tokens']:,}" in md

    mixture = _stats(run_workdir, "data", "mixture-report", "report.json")
    for component in mixture["components"]:
        cells = _row(_section(md, "Tokens and mixture"), component["name"])
        assert cells[2:4] == [f"{component['tokens_available']:,}", f"{component['tokens_drawn']:,}"]

    training = _section(md, "Training")
    assert _row(training, "steps") == ["12"] and _row(training, "final loss") == [f"{7.5 - 0.15 * 12:.4f}"]
    assert _row(training, "tokens/s (after step 1)") == [f"{11 * 2048 / sum(2048 / (1000 + 10 * s) for s in range(2, 13)):,.0f}"]
    assert "model_type nemotron_h, 3.0 MB of safetensors" in training

    throughput = _section(md, "Throughput")
    for stage in stages:
        assert _row(throughput, stage["name"])[3] == f"{stage['docs_in'] / stage['seconds']:,.1f}"
    tokens = _stats(run_workdir, "data", "tokens", "stats.json")
    assert _row(throughput, "tokenize")[5] == f"{tokens['tokens'] / tokens['seconds']:,.0f}"
    assert _row(throughput, "training")[5] != "-"

    # Markdown links images next to it; HTML carries the same images inside itself.
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {Path(link).stem for link in links} == {"funnel", "languages", "heuristics", "fuzzy-clusters", "quality",
                                                   "synthetic", "mixture", "training", "throughput"}
    linked = [(run_workdir / link).read_bytes() for link in links]
    assert all(min(_png_size(png)) > 100 for png in linked)
    html = (run_workdir / "report.html").read_text()
    assert _html_images(html) == linked
    assert not re.search(r"<script|<link|https?://|src=\"(?!data:)", html)
    for title in titles:
        assert f"<h2>{title}</h2>" in html


def test_report_of_a_curate_only_workdir(run_workdir: Path, tmp_path: Path) -> None:
    """`ccforge curate --workdir W` puts the stages directly under W; parts never run are left out."""
    workdir = tmp_path / "curate-only"
    shutil.copytree(run_workdir / "curation", workdir, ignore=shutil.ignore_patterns("part-*", "_*"))
    shutil.rmtree(workdir / "rephrase")
    assert main(["report", str(workdir), "--top-languages", "1"]) == 0
    md = (workdir / "report.md").read_text()
    assert re.findall(r"^## (.+)$", md, re.MULTILINE)[:6] == [
        "Curation funnel", "Languages", "Heuristic drop reasons", "Near-duplicate clusters", "Quality buckets",
        "Throughput"]
    assert "## Synthetic data" not in md and "## Training" not in md and "tokenize" not in md
    assert len(re.findall(r"^\| [a-z]+ \| [\d,]+ \| [\d.]+ \|$", _section(md, "Languages"), re.MULTILINE)) == 1
    assert sorted(p.name for p in (workdir / "report-images").iterdir()) == sorted(
        f"{Path(link).stem}.png" for link in re.findall(r"\]\(([^)]+)\)", md))


def test_report_of_training_alone_and_of_nothing(tmp_path: Path, capsys) -> None:
    _write_metrics(tmp_path / "train")
    with (tmp_path / "train" / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"step": 13, "loss": 5.')  # a run still training: its last line is half written
    assert main(["report", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert re.findall(r"^## (.+)$", md, re.MULTILINE) == ["Training", "Throughput"]
    assert _row(md, "steps") == ["12"]
    records = read_run(tmp_path).training
    assert [r["step"] for r in records] == list(range(1, 13)) and records[6]["loss"] == pytest.approx(7.5 - 0.15 * 7)
    assert [_png_size(png)[0] > 100 for png in _html_images((tmp_path / "report.html").read_text())] == [True, True]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 0
    assert "Nothing to report" in (empty / "report.html").read_text()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing: no such directory")
    broken = empty / "curation" / "classify" / "quality.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{")
    assert main(["report", str(empty)]) == 2
    assert capsys.readouterr().err.startswith(f"ccforge report: error: {broken}: not valid JSON")


def test_report_html_renders_in_chromium(run_workdir: Path, tmp_path: Path) -> None:
    """Every image of report.html decodes in a real browser (headless Chromium, no network)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    if not (run_workdir / "report.html").exists():
        assert main(["report", str(run_workdir)]) == 0
    html = (run_workdir / "report.html").read_text()
    probe = tmp_path / "probe.html"  # report.html has no scripts; a copy gets one that lists its images
    probe.write_text(html.replace("</body>", """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "images";
  out.textContent = JSON.stringify(Array.from(document.images, i => [i.complete, i.naturalWidth, i.naturalHeight]));
  document.body.appendChild(out);
});
</script></body>"""))
    dom = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    match = re.search(r'<pre id="images">(.*?)</pre>', dom)
    assert match, dom[-2000:]
    images = json.loads(match.group(1))
    expected = [_png_size(png) for png in _html_images(html)]
    assert len(images) == len(expected) == 9
    assert [(w, h) for complete, w, h in images if complete] == expected

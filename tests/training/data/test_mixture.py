"""Mixture configs: clear errors for bad ones, counts from footers, plans and the report."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from mixture_texts import THREE_COMPONENTS

from training.data import MixtureError, load_mixture, plan_mixture, resolve_components, write_mix_report
from training.data.report import mix_markdown, plan_summary

WEIGHTS = """
phases:
  - name: stable
    tokens: 200000
    weights: {handbook: 0.5, postgres: 0.3, synthetic: 0.2}
  - name: anneal
    weights: {handbook: 0.8, synthetic: 0.2}
"""


def test_footer_counts_equal_the_tokens_on_disk(mixture_file, token_dir):
    components = {c.name: c for c in resolve_components(load_mixture(mixture_file(THREE_COMPONENTS + WEIGHTS)))}
    table = pq.read_table(sorted(map(str, token_dir.glob("*.parquet"))), columns=["source", "synthetic_kind", "n_tokens"])
    handbook = table.filter(pc.equal(table["source"], "handbook"))
    real_postgres = table.filter(pc.and_(pc.equal(table["source"], "postgres"), pc.is_null(table["synthetic_kind"])))
    synthetic = table.filter(pc.equal(table["synthetic_kind"], "diverse_qa"))
    for name, rows in (("handbook", handbook), ("postgres", real_postgres), ("synthetic", synthetic)):
        assert components[name].docs == rows.num_rows > 0
        assert components[name].tokens == pc.sum(rows["n_tokens"]).as_py()  # EOS already stored
    assert len(components["handbook"].shards) == 4


def test_plan_places_phases_and_counts_epochs(mixture_file):
    plan = plan_mixture(load_mixture(mixture_file(THREE_COMPONENTS + WEIGHTS)), tokens=500_000)
    assert [(p.name, p.start, p.tokens) for p in plan.phases] == [("stable", 0, 200_000), ("anneal", 200_000, 300_000)]
    assert plan.phase_end_windows() == [200_000 // 128, 500_000 // 128]
    handbook = next(c for c in plan.components if c.name == "handbook")
    epochs = plan.epochs()["handbook"]
    assert epochs == pytest.approx([0.5 * 200_000 / handbook.tokens, (0.5 * 200_000 + 0.8 * 300_000) / handbook.tokens])
    assert plan.epochs()["postgres"][0] == plan.epochs()["postgres"][1]  # weight 0 in anneal


LONG_CONTEXT = """
phases:
  - {name: stable, tokens: 100000, weights: {handbook: 0.5, postgres: 0.5}}
  - {name: long, tokens: 60000, seq_len: 512, micro_batch_size: 2, weights: {handbook: 1.0}}
  - {name: anneal, weights: {synthetic: 1.0}}
"""


def test_phases_with_their_own_seq_len_hold_whole_windows(mixture_file):
    plan = plan_mixture(load_mixture(mixture_file(THREE_COMPONENTS + LONG_CONTEXT)), tokens=200_000)
    assert [(p.name, p.start, p.tokens, p.seq_len, p.micro_batch_size) for p in plan.phases] == [
        ("stable", 0, 100_000, 128, None), ("long", 100_000, 60_000, 512, 2), ("anneal", 160_000, 40_000, 128, None)]
    # stable: 781 windows of 128 end at token 99,968; long: (160,000 - 99,968) // 512 = 117 windows end at
    # 159,872; anneal: (200,000 - 159,872) // 128 = 313 windows. The remainders never add up.
    assert plan.phase_end_windows() == [781, 781 + 117, 781 + 117 + 313]
    markdown = mix_markdown(plan_summary(plan))
    assert "## Phase long: tokens 100,000 to 160,000, seq_len 512, micro_batch_size 2\n" in markdown
    with pytest.raises(MixtureError, match=r"^phase 'long' has 500 tokens, less than one window \(seq_len 512\)$"):
        plan_mixture(load_mixture(mixture_file(THREE_COMPONENTS + LONG_CONTEXT.replace("60000", "500"))))


def test_report_has_tables_json_and_chart(mixture_file, tmp_path):
    plan = plan_mixture(load_mixture(mixture_file(THREE_COMPONENTS + WEIGHTS)), tokens=500_000)
    paths = write_mix_report(plan, tmp_path / "report")
    markdown = paths["markdown"].read_text()
    assert "## Phase anneal: tokens 200,000 to 500,000, seq_len 128\n" in markdown
    assert "| handbook | 4 | sources=['handbook'] |" in markdown
    summary = json.loads(paths["json"].read_text())
    assert sum(c["tokens_drawn"] for c in summary["components"]) == 500_000
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("extra", "message"), [
    ("", "mixture.yaml: component 'handbook' has no weight (or give phases with weights)"),
    ("phases:\n  - {name: a, tokens: 1000, weights: {handbook: 0.5, postgres: 0.3}}\n  - {name: b, weights: {handbook: 1}}",
     "mixture.yaml: weights of phase 'a' sum to 0.8, not 1 (handbook: 0.5, postgres: 0.3)"),
    ("phases:\n  - {name: a, tokens: 1000, weights: {handbook: 1}}\n  - {name: b, weights: {handbok: 1}}",
     "mixture.yaml: phase 'b': unknown component 'handbok' (components: handbook, postgres, synthetic)"),
    ("phases:\n  - {name: a, weights: {handbook: 1}}\n  - {name: b, weights: {handbook: 1}}",
     "mixture.yaml: phase 'a' has no tokens; only the last phase may run to the end"),
    ("phases:\n  - {name: a, tokens: -5, weights: {handbook: 1}}",
     "mixture.yaml: phases.0.tokens: Input should be greater than 0"),
    ("shuffle: true\nphases:\n  - {name: a, weights: {handbook: 1}}",
     "mixture.yaml: shuffle: Extra inputs are not permitted"),
    ("phases:\n  - {name: a, tokens: 1000, weights: {handbook: 1}}\n  - {name: b, seq_len: 0, weights: {handbook: 1}}",
     "mixture.yaml: phases.1.seq_len: Input should be greater than 0"),
])
def test_bad_configs_fail_in_one_line(mixture_file, extra, message):
    with pytest.raises(MixtureError) as err:
        load_mixture(mixture_file(THREE_COMPONENTS + extra))
    assert str(err.value).split("/")[-1] == message


def test_missing_shards_and_empty_filters_are_named(mixture_file, tmp_path):
    text = THREE_COMPONENTS.replace("paths: [{shards}]", f"paths: [{tmp_path}/nowhere/*.parquet]")
    config = load_mixture(mixture_file(text + WEIGHTS))
    with pytest.raises(MixtureError, match=r"^component 'synthetic': no token shards match .*/nowhere/\*\.parquet$"):
        resolve_components(config)
    text = THREE_COMPONENTS.replace("sources: [postgres]", "sources: [postgress]")
    with pytest.raises(MixtureError, match=r"^component 'postgres': no documents match sources=\['postgress'\], "
                                           r"synthetic_kinds=\[None\] in 4 shard\(s\)$"):
        resolve_components(load_mixture(mixture_file(text + WEIGHTS)))


def test_budget_beyond_max_epochs_is_rejected(mixture_file):
    config = load_mixture(mixture_file(THREE_COMPONENTS + WEIGHTS))
    handbook_tokens = next(c.tokens for c in resolve_components(config) if c.name == "handbook")
    plan_mixture(config, tokens=int(8 * handbook_tokens / 0.8) - 200_000)  # just under 8 epochs: fine
    with pytest.raises(MixtureError, match=r"^component 'handbook' would be read 8\.\d\d times \(.* tokens\) "
                                           r"but max_epochs is 8$"):
        plan_mixture(config, tokens=int(8 * handbook_tokens / 0.8) + 200_000)


def test_closed_phases_must_cover_the_budget(mixture_file):
    text = THREE_COMPONENTS + "phases:\n  - {name: a, tokens: 1000, weights: {handbook: 1}}"
    with pytest.raises(MixtureError, match=r"^phases cover 1,000 tokens but 5,000 were asked for"):
        plan_mixture(load_mixture(mixture_file(text)), tokens=5000)

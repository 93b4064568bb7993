"""Demo and test scaffolding, never imported by a production run: the sample crawl builder, the demo
rephrasing model, a stub OpenAI-compatible server, and the dedup evaluation harness (real documents
with planted near-duplicates). The quick start, the tests and the benchmarks use them."""

"""Reports of a run: the curation funnel (`funnel`), what a workdir holds (`summary`), and the run
report's sections, charts and rendering to report.md / report.html."""

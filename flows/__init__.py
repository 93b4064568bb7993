"""Prefect flows and the `ccforge` command line: the only place Dask and Prefect are touched."""

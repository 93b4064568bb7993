"""Prefect flows and the `ccforge` command line: the only place Dask and Prefect are touched."""

import os

# These must be set before Prefect or Dask is first imported, hence here.
# The embedded Prefect API starts a local server per process; on 2 busy cores that can take
# longer than Prefect's default allowance.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# Dask's cluster lifecycle chatter (workers joining, leaving) is noise in a CLI run.
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
# Machines without internet (and users who did not opt in) should not try to phone home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

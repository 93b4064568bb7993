"""Installing the Debian documentation packages the sample crawl is made from, when we may."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

from flows.demo.sample_crawl.sources import HANDBOOK_ROOT, POSTGRESQL_ROOT, PYTHON_ROOT

log = logging.getLogger(__name__)

#: Package -> the directory it installs; a present directory means the package is there.
DOC_PACKAGES = {"debian-handbook": HANDBOOK_ROOT, "postgresql-doc-15": POSTGRESQL_ROOT,
                "python3.11-doc": PYTHON_ROOT}
APT_TIMEOUT_SECONDS = 900


def ensure_doc_packages() -> list[str]:
    """apt-get install the missing doc packages when root with apt; returns what was installed.

    Never raises: without root, apt-get or a reachable mirror the build uses what is installed.
    """
    missing = sorted(name for name, root in DOC_PACKAGES.items() if not root.is_dir())
    if not missing:
        return []
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        log.info("doc packages %s missing; not root or no apt-get, building from what is installed",
                 " ".join(missing))
        return []
    # A stale package index is the usual reason an install fails; refresh it once and retry.
    if not _apt_get("install", "-y", "--no-install-recommends", *missing):
        if not (_apt_get("update") and _apt_get("install", "-y", "--no-install-recommends", *missing)):
            log.info("apt-get could not install %s; building from what is installed", " ".join(missing))
            return []
    return [name for name in missing if DOC_PACKAGES[name].is_dir()]


def _apt_get(*args: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(["apt-get", "-q", *args], env=env, capture_output=True,
                                timeout=APT_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0

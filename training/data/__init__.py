"""Token mixtures and the streaming Parquet loader (reads token shards; never imports curation)."""

from training.data.loader import MixtureDataset, MixtureLoader, build_loader, collate_windows
from training.data.mixture import (
    Component, MixtureConfig, MixtureError, MixturePlan, PhasePlan, load_mixture, plan_mixture, resolve_components,
)
from training.data.report import write_mix_report
from training.data.stream import ConsumerStream, DocRef, Window

__all__ = [
    "Component", "ConsumerStream", "DocRef", "MixtureConfig", "MixtureDataset", "MixtureError", "MixtureLoader",
    "MixturePlan", "PhasePlan", "Window", "build_loader", "collate_windows", "load_mixture", "plan_mixture",
    "resolve_components", "write_mix_report",
]

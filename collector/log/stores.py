"""The store a configuration names (``--store file|nats``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collector.config import Config
    from collector.metrics import Metrics


def make_store(config: Config, metrics: Metrics):
    """The store ``config.store`` names, not started yet."""
    if config.store == "nats":
        from collector.log.nats import NatsStore

        return NatsStore(config, metrics=metrics)
    from collector.log.files import FileStore

    return FileStore(
        config.data_dir,
        fsync=config.fsync,
        fsync_interval=config.fsync_interval,
        segment_max_bytes=config.segment_max_bytes,
        max_pending_bytes=config.max_pending_bytes,
        rejected_retention_days=config.rejected_retention_days,
        rejected_max_bytes=config.rejected_max_bytes,
        metrics=metrics,
    )

"""The pipeline's stages, one module each, each with one entry function its Lambda handler calls:

* :mod:`~rentlake.stages.ingest` — landed objects → raw zone (``ingest.run``);
* :mod:`~rentlake.stages.clean` — ingested batches → clean zone + quarantine (``clean.run``);
* :mod:`~rentlake.stages.explore` — clean zone → exploration report (``explore.run``);
* :mod:`~rentlake.stages.train` — clean zone → a registry version (``train.run``);
* :mod:`~rentlake.stages.evaluate` — a version against the champion → promotion when the gate passes
  (``evaluate.run``);
* :mod:`~rentlake.stages.score` — a file of listings → the same rows with estimates (``score.run``).

A stage reads and writes the lake through :class:`~rentlake.lake.Lake` and takes its decisions with the
pure rules of :mod:`rentlake.parsing`, :mod:`rentlake.cleaning` and the modelling modules. Ingest and clean
commit the way the lake's protocol says: data files under names unique to the attempt, then one commit
object created only if absent; a writer that loses deletes only its own files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rentlake.lake import Lake, LakeError

log = logging.getLogger(__name__)


def discard_uncommitted(lake: Lake, own_keys: Sequence[str]) -> None:
    """Delete files this attempt wrote and will not commit (never another writer's).

    A failure here is logged, not raised: uncommitted files are never read, the lake's sweep removes them
    by age, and the caller's own error (or outcome) is what matters.
    """
    if not own_keys:
        return
    try:
        lake.delete_keys(own_keys)
    except LakeError as exc:
        log.warning("could not delete %d uncommitted files (the sweep will): %s", len(own_keys), exc)

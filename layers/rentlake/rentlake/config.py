"""Configuration, read once from the environment.

Every variable here is set by ``template.yaml`` for the deployed functions, and by the ``rentlake``
command for its lake. Functions read the environment once, at cold start (:func:`load`, or
:data:`SETTINGS` at module load), and open their lake with :func:`open_lake`.

The lake's address is ``RENTLAKE_LAKE`` (``s3://bucket[/prefix]`` or a local folder); the deployed
functions set ``RENTLAKE_BUCKET`` only, which means ``s3://<bucket>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import boto3

    from rentlake.lake import Lake

DEFAULT_REGION = "eu-west-3"


@dataclass(frozen=True)
class Settings:
    """What a function needs to know about its deployment.

    ``lake`` is the lake's address; ``bucket`` its S3 bucket (empty for a local lake, whose S3-style
    events are then accepted whatever bucket name they carry).
    """

    lake: str
    bucket: str
    region: str
    glue_database: str
    model_refresh_seconds: float
    outlier_mad_k: float
    outlier_min_group: int
    chunk_rows: int
    max_object_bytes: int
    duplicate_window_days: int = 180


def _float(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool = False) -> float:
    raw = env.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError as exc:  # a typo in the template must fail loudly at cold start
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from exc
    # Sizes and thresholds below 1 are typos too (a chunk of 0 rows would never end a read loop).
    if not (value >= 0 if allow_zero else value > 0):
        least = "0 or more" if allow_zero else "greater than 0"
        raise ValueError(f"environment variable {name}={raw!r} must be a number {least}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _float(env, name, default)
    if value < 1 or value != int(value):
        raise ValueError(f"environment variable {name}={env.get(name)!r} must be a whole number, 1 or more")
    return int(value)


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (default: ``os.environ``).

    Parameters
    ----------
    env
        Mapping of environment variables.

    Returns
    -------
    Settings
        The settings; ``lake`` is empty when neither ``RENTLAKE_LAKE`` nor ``RENTLAKE_BUCKET`` is set
        (:func:`open_lake` then says so).
    """
    env = os.environ if env is None else env
    address = lake_address(env)
    return Settings(
        lake=address,
        bucket=address[len("s3://") :].partition("/")[0] if address.startswith("s3://") else "",
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        glue_database=env.get("RENTLAKE_GLUE_DATABASE", "rentlake"),
        model_refresh_seconds=_float(env, "RENTLAKE_MODEL_REFRESH_SECONDS", 60.0, allow_zero=True),
        outlier_mad_k=_float(env, "RENTLAKE_OUTLIER_MAD_K", 4.0),
        outlier_min_group=_int(env, "RENTLAKE_OUTLIER_MIN_GROUP", 30),
        chunk_rows=_int(env, "RENTLAKE_CHUNK_ROWS", 250_000),
        max_object_bytes=_int(env, "RENTLAKE_MAX_OBJECT_BYTES", 512 * 1024 * 1024),
        duplicate_window_days=_int(env, "RENTLAKE_DUPLICATE_WINDOW_DAYS", 180),
    )


def lake_address(env: Mapping[str, str]) -> str:
    """The lake's address: ``RENTLAKE_LAKE``, else ``s3://`` + ``RENTLAKE_BUCKET``, else empty."""
    address = env.get("RENTLAKE_LAKE", "").strip()
    if address:
        return address
    bucket = env.get("RENTLAKE_BUCKET", "").strip()
    return f"s3://{bucket}" if bucket else ""


def open_lake(settings: Settings | None = None, boto3_session: boto3.Session | None = None) -> Lake:
    """Open the lake the settings name (the one way a function gets its lake).

    Parameters
    ----------
    settings
        The settings (default: :data:`SETTINGS`, read when this module was imported).
    boto3_session
        The session of an S3 lake's clients (default: one made by the lake on first use).

    Returns
    -------
    Lake
        An S3 or a local lake; :class:`~rentlake.lake.LakeError` when no lake is configured.
    """
    from rentlake.lake import open_lake as open_address

    settings = SETTINGS if settings is None else settings
    return open_address(settings.lake, database=settings.glue_database, boto3_session=boto3_session)


SETTINGS = load()

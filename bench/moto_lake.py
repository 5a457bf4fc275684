"""A moto S3 + Glue server in a process of its own, and a bucket in it addressed as a lake (benchmarks only).

The server runs apart from the measured process, as S3 is remote to a Lambda function: its memory and CPU
are not the stage's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

REGION = "eu-west-3"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lake_environment(lake: str, database: str, endpoint: str | None = None) -> dict[str, str]:
    """This process's environment for a child working on the lake at ``lake`` (a folder or ``s3://``),
    its tables in the Glue database ``database``: fake credentials, quiet Powertools, and the moto server
    at ``endpoint`` when given."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "RENTLAKE_GLUE_DATABASE": database,
        "RENTLAKE_LAKE": lake,
    }
    env.pop("RENTLAKE_BUCKET", None)
    env.pop("AWS_ENDPOINT_URL", None)
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def start_moto(wait_s: float = 3.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start a threaded moto server on a free port; returns the process and its endpoint URL."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from moto.server import ThreadedMotoServer as S; import time; "
            f"s=S('127.0.0.1',{port},verbose=False); s.start(); time.sleep(1e9)",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(wait_s)
    return server, f"http://127.0.0.1:{port}"


def moto_lake(bucket: str) -> tuple[subprocess.Popen[bytes], str]:
    """A moto server, this process's AWS environment pointed at it, and ``bucket`` created there.

    Returns the server process and the lake's address ``s3://<bucket>`` (child processes inherit the
    environment, so they reach the same server).
    """
    import boto3

    server, endpoint = start_moto()
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint,
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    boto3.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return server, f"s3://{bucket}"

"""A real S3-compatible server for the tests: moto's server mode in a process of its own, on a free port.

Its own process (rather than moto's ThreadedMotoServer in the test process) keeps the server's memory out of the
tests' memory measurements and talks to the store over a real socket, as MinIO or S3 would.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from cli.redis_server import free_port, stop_process

KEY = SECRET = "testing"
REGION = "us-east-1"


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint: str

    def client(self):
        """A boto3 client of the server, to look at buckets the way an operator would (not through the store)."""
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                            region_name=REGION, config=Config(retries={"max_attempts": 1}))

    def options(self, **extra: Any) -> dict[str, Any]:
        """fsspec storage options for this server, as a user puts them in TOPICQ_ARTIFACT_OPTIONS."""
        return {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": self.endpoint, "region_name": REGION},
                **extra}

    def new_bucket(self) -> str:
        name = f"topicq-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def uploads_in_progress(self, bucket: str) -> list[str]:
        return [u["Key"] for u in self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    def stop(self, timeout: float = 10) -> None:
        stop_process(self.process, timeout)


def start_s3_server(log_dir: Path, timeout: float = 30) -> S3Server:
    port = free_port()
    with (log_dir / "moto.log").open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT)
    server = S3Server(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            server.client().list_buckets()
            return server
        except Exception:  # not listening yet
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"moto's S3 server did not start on port {port}; see {log_dir / 'moto.log'}")

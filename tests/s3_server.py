"""A real S3 API on loopback for the tests: moto's server mode, one bucket, and the AWS_* variables that reach it."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# Credentials moto accepts; the tests search results and logs for this secret to show it never lands there.
SECRET = f"seqcast-test-secret-{uuid.uuid4().hex[:12]}"


@dataclass
class S3Server:
    """A running S3 API: its endpoint, one bucket, and the environment a client process needs."""

    endpoint: str
    bucket: str

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "seqcast-test",
                "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1"}

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="seqcast-test",
                     aws_secret_access_key=SECRET, region_name="us-east-1").create_bucket(Bucket=name)


@contextmanager
def running_s3(bucket: str = "seqcast-tests") -> Iterator[S3Server]:
    """Start moto's threaded S3 server on a free loopback port with ``bucket`` created; stop it after."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request would drown the tests' own output
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = S3Server(f"http://{host}:{port}", bucket)
        s3.create_bucket(bucket)
        yield s3
    finally:
        server.stop()


@contextmanager
def running_s3_process(bucket: str = "seqcast-tests") -> Iterator[S3Server]:
    """Start moto's S3 server as its own process on a free loopback port with ``bucket`` created; stop it after.

    For clients that may hold the GIL while they wait on the network (some of delta-rs's calls): a server thread in
    the test's own process would then never answer them.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s3 = S3Server(f"http://127.0.0.1:{port}", bucket)
        deadline = time.monotonic() + 60
        while True:
            try:
                s3.create_bucket(bucket)
                break
            except Exception:  # not listening yet
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield s3
    finally:
        server.terminate()
        server.wait(timeout=30)

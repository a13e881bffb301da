"""Soak test of S3 and GCS writes through a faulty network: a 20-task pipeline, 10 runs.

    python benchmarks/soak_faults.py                      # S3, 10 runs, 30% faults
    python benchmarks/soak_faults.py --backend gcs
    python benchmarks/soak_faults.py --runs 20 --rate 0.4 --first-seed 100

Each run writes a fresh bucket on a moto server or fake-gcs-server (a child
process on 127.0.0.1) through a proxy that fails a seeded random share of the
requests: a 503 answer, a connection reset before the request reaches the
server, or a reset after the server acted on it (the client cannot tell
whether its write was committed). The pipeline is 19 create-only parts, two
of them 6 MiB (multipart or resumable uploads of 5 MiB parts), and a total
reading them all; the targets keep the default retry policy and the tasks the
default ``retry_count``, so any write that gives up fails the run. After each
run the bucket is read directly: every object present must be whole, and no
multipart upload may be pending (S3; GCS cannot list upload sessions). Prints
one row per run and a summary; exits 1 unless every run completed cleanly.
Run it from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' fixtures

from tests.targets._support import Backend
from tests.targets.servers import (
    FakeGCSServer,
    MotoServer,
    create_gcs_bucket,
    create_s3_bucket,
    install_loopback_guard,
    unique_bucket,
)
from tests.targets.soak import SoakRun, run_pipeline

_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
    "GOOGLE_CLOUD_PROJECT": "test-project",
    "NO_GCE_CHECK": "true",
    "NO_PROXY": "127.0.0.1,localhost",
}


def _row(seed: int, run: SoakRun) -> str:
    faults = "/".join(str(run.faults[k]) for k in ("status", "reset", "reset_after"))
    return (
        f"{seed:>4}  {'yes' if run.ok else 'NO':>8}  {len(run.failed):>6}  {run.requests:>8}  "
        f"{faults:>15}  {len(run.partial):>7}  {len(run.missing):>7}  "
        f"{run.leftover_uploads:>7}  {run.seconds:>7.1f}"
    )


async def main(backend: str, runs: int, first_seed: int, rate: float, tasks: int) -> int:
    install_loopback_guard()
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(_ENV)
    results: list[SoakRun] = []
    print(f"{backend}: {tasks} tasks, {rate:.0%} of requests faulty (503 / reset / reset after)")
    print("seed  complete  failed  requests  503/rst/rst-aft  partial  missing  uploads  seconds")
    with ExitStack() as stack:
        if backend == "s3":
            endpoint = stack.enter_context(MotoServer()).url
            os.environ["AWS_ENDPOINT_URL"] = endpoint
            create_bucket = create_s3_bucket
        else:
            endpoint = stack.enter_context(FakeGCSServer()).url
            os.environ["STORAGE_EMULATOR_HOST"] = endpoint
            create_bucket = create_gcs_bucket
        for seed in range(first_seed, first_seed + runs):
            bucket = unique_bucket()
            create_bucket(endpoint, bucket)
            run = await run_pipeline(
                Backend(backend, bucket, endpoint), seed=seed, fault_rate=rate, tasks=tasks
            )
            results.append(run)
            print(_row(seed, run), flush=True)
            for line in run.failed:
                print(f"      failed: {line}", flush=True)
            for key in run.partial:
                print(f"      partial: {key}", flush=True)
    complete = sum(r.ok for r in results)
    partial = sum(len(r.partial) + len(r.missing) for r in results)
    uploads = sum(r.leftover_uploads for r in results)
    print(
        f"runs complete: {complete}/{runs}; partial or missing objects: {partial}; "
        f"leftover multipart uploads: {uploads}"
    )
    return 0 if complete == runs and partial == 0 and uploads == 0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("s3", "gcs"), default="s3", help="default s3")
    parser.add_argument("--runs", type=int, default=10, help="how many runs (default 10)")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--rate", type=float, default=0.3, help="share of faulty requests")
    parser.add_argument("--tasks", type=int, default=20, help="tasks per run (default 20)")
    args = parser.parse_args()
    code = asyncio.run(main(args.backend, args.runs, args.first_seed, args.rate, args.tasks))
    sys.exit(code)

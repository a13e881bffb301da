"""Soak test of fencing: holders stopped (SIGSTOP) past their lease, then woken up.

    python benchmarks/soak_stall.py                  # 60 trials: 20 of each kind
    python benchmarks/soak_stall.py --trials 90 --kinds quiet,local

Each trial runs the loop of ``tests/test_fencing.py`` in a fresh folder with its
own journal (``tests/fixtures/stall_trials.py``): ``asyncflow run`` with a
1.5 s lease, stopped at a chosen point, a second process that takes the task
over and finishes it, then the first woken up. Kinds, taken in turn:

- ``quiet``: stopped while the body of a task without output runs;
- ``local``: stopped in the middle of committing a local file;
- ``s3``: stopped while its PUT is held in flight by a proxy in front of a
  moto server (the second process writes directly).

A trial is a violation when not exactly one success is journaled (the second
run's), the first run does not take the second's success, an exit code is not
0, or the output is not the second run's. Prints one line per violation and a
summary per kind; exits 1 on any. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' fixtures

import anyio
from tests.fixtures.stall_trials import Trial, local_trial, quiet_trial, s3_trial, violations
from tests.targets.faults import FaultProxy
from tests.targets.servers import MotoServer, create_s3_bucket, unique_bucket

from asyncflow.targets import S3Target

KINDS = ("quiet", "local", "s3")


def _s3_environment(url: str) -> None:
    """Point this process (and the runs it starts) at moto, with test credentials."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
    )


def one_trial(kind: str, folder: Path, moto: str, bucket: str, index: int) -> list[str]:
    trial: Trial
    if kind == "quiet":
        return violations(quiet_trial(folder), "quiet")
    if kind == "local":
        output = folder / "out" / "slow.txt"
        found = violations(local_trial(folder), "slow", output.read_text)
        leftovers = sorted(p.name for p in output.parent.iterdir() if p.name != "slow.txt")
        return found + ([f"left in out/: {leftovers}"] if leftovers else [])
    url = f"s3://{bucket}/trial-{index}.txt"
    with FaultProxy(moto) as proxy:
        trial = s3_trial(folder, url, moto, proxy)
    return violations(trial, "s3", functools.partial(anyio.run, S3Target(url).read_text))


def main(trials: int, kinds: list[str]) -> int:
    counts: collections.Counter[str] = collections.Counter()
    failed: collections.Counter[str] = collections.Counter()
    began = time.perf_counter()
    with MotoServer() as moto:
        _s3_environment(moto.url)
        bucket = unique_bucket()
        create_s3_bucket(moto.url, bucket)
        for index in range(trials):
            kind = kinds[index % len(kinds)]
            with tempfile.TemporaryDirectory(prefix="soak-stall-") as folder:
                try:
                    found = one_trial(kind, Path(folder), moto.url, bucket, index)
                except AssertionError as exc:  # a trial that could not go as planned
                    found = [f"trial did not complete: {str(exc)[:300]}"]
            counts[kind] += 1
            if found:
                failed[kind] += 1
                print(f"trial {index} ({kind}): VIOLATION: {'; '.join(found)[:500]}", flush=True)
    took = time.perf_counter() - began
    for kind in kinds:
        print(f"{kind}: {counts[kind]} trials, {failed[kind]} violations")
    total = sum(failed.values())
    print(f"{trials} stall trials: {trials - total} held, {total} violations, {took:.0f} s")
    return 1 if total else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60, help="how many trials (default 60)")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"kinds taken in turn (default {','.join(KINDS)})"
    )
    args = parser.parse_args()
    chosen = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown or not chosen:
        parser.error(f"--kinds: unknown {unknown}; choose among {', '.join(KINDS)}")
    sys.exit(main(args.trials, chosen))

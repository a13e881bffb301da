"""retry_count counts attempts (Luigi's meaning); luigi.cfg lets failed tasks be retried."""

import os

import luigi


class Flaky(luigi.Task):
    failures = luigi.IntParameter()
    retry_count = 3

    def output(self):
        return luigi.LocalTarget(f"flaky-{self.failures}.txt")

    def run(self):
        seen = f"attempts-{self.failures}.log"
        with open(seen, "a") as log:
            log.write("attempt\n")
        with open(seen) as log:
            attempts = len(log.readlines())
        if attempts <= self.failures:
            raise RuntimeError(f"attempt {attempts} fails")
        with self.output().open("w") as out:
            out.write(f"done after {attempts} attempts\n")


def scenario():
    import _harness

    assert os.path.exists("luigi.cfg")
    return [_harness.build([Flaky(1)]), _harness.build([Flaky(5)])]

"""RangeDaily and RangeHourly over dated tasks, and the dependency tree printer."""

import datetime
import re

from luigi.tools.deps_tree import print_tree
from luigi.tools.range import RangeDaily, RangeHourly

import luigi

NOW = int(datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC).timestamp())


class Daily(luigi.Task):
    date = luigi.DateParameter()

    def output(self):
        return luigi.LocalTarget(f"daily/{self.date}.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{self.date}\n")


class Hourly(luigi.Task):
    hour = luigi.DateHourParameter()
    kind = luigi.Parameter(default="x")

    def output(self):
        return luigi.LocalTarget(f"hourly/{self.kind}-{self.hour:%Y%m%d%H}.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{self.hour}\n")


def scenario():
    import _harness

    with luigi.LocalTarget("daily/2026-11-03.txt").open("w") as out:
        out.write("already there\n")
    days = RangeDaily(
        of=Daily, start=datetime.date(2026, 11, 1), stop=datetime.date(2026, 11, 6), now=NOW
    )
    hours = RangeHourly(
        of=Hourly,
        of_params={"kind": "y"},
        start=datetime.datetime(2026, 11, 20, 22),
        stop=datetime.datetime(2026, 11, 21, 2),
        now=NOW,
        task_limit=3,
    )
    tree = re.sub(r"\x1b\[[0-9;]*m", "", print_tree(Daily(datetime.date(2026, 11, 3))))
    return [{"tree": tree}, _harness.build([days]), _harness.build([hours])]

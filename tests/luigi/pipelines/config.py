"""luigi.cfg for task parameters and Config classes; namespaces; util decorators."""

from luigi.util import common_params, inherits, requires

import luigi


class paths(luigi.Config):
    root = luigi.Parameter(default="default-root")
    depth = luigi.IntParameter(default=1)


class Region(luigi.Task):
    region = luigi.Parameter()
    year = luigi.IntParameter(default=2020)

    def output(self):
        return luigi.LocalTarget(f"{paths().root}/{self.region}-{self.year}-{paths().depth}.txt")

    def run(self):
        setting = luigi.configuration.get_config().get("extra", "greeting", "none")
        with self.output().open("w") as out:
            out.write(f"{self.region} {self.year} {setting}\n")


@requires(Region)
class Report(luigi.Task):
    def output(self):
        return luigi.LocalTarget(f"{paths().root}/report-{self.region}.txt")

    def run(self):
        with self.input().open() as src, self.output().open("w") as out:
            out.write("report of " + src.read())


@inherits(Region)
class Summary(luigi.Task):
    def requires(self):
        return self.clone_parent()

    def output(self):
        return luigi.LocalTarget(f"{paths().root}/summary-{self.region}.txt")

    def run(self):
        shared = common_params(self, Region)
        with self.output().open("w") as out:
            out.write(f"{sorted(shared.items())}\n")


luigi.namespace("geo")


class Named(luigi.Task):
    def output(self):
        return luigi.LocalTarget(f"{paths().root}/{self.task_family}.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write(self.get_task_namespace() + "\n")


class Explicit(Named):
    task_namespace = "other"


luigi.namespace()


def scenario():
    import _harness

    return [
        {
            "families": [
                Named.get_task_family(),
                Explicit.get_task_family(),
                Report.get_task_family(),
            ]
        },
        _harness.build([Report(), Summary(year=2021), Named(), Explicit()]),
    ]

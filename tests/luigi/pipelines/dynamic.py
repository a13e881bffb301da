"""A run() that is a plain generator, yielding tasks and DynamicRequirements."""

import luigi


class Part(luigi.Task):
    index = luigi.IntParameter()
    group = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(f"parts/{self.group}/{self.index}.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write(f"part {self.index}\n")


class Assemble(luigi.Task):
    size = luigi.IntParameter(default=4)

    def output(self):
        return luigi.LocalTarget(f"assembled-{self.size}.txt")

    def run(self):
        first = yield Part(0, self.size)
        rest = yield luigi.DynamicRequirements([Part(i, self.size) for i in range(1, self.size)])
        with self.output().open("w") as out:
            for target in [first, *rest]:
                with target.open("r") as part:
                    out.write(part.read())


def scenario():
    import _harness

    return [_harness.build([Assemble()]), _harness.build([Assemble(size=6)])]

"""A chain of tasks writing and reading local files, with and without `with`."""

import luigi


class Words(luigi.Task):
    topic = luigi.Parameter()
    count = luigi.IntParameter(default=3)

    def output(self):
        return luigi.LocalTarget(f"data/{self.topic}/words-{self.count}.txt")

    def run(self):
        out = self.output().open("w")
        for i in range(self.count):
            out.write(f"{self.topic} word {i}\n")
        out.close()


class Lengths(luigi.Task):
    topic = luigi.Parameter()

    def requires(self):
        return {"short": Words(self.topic, 2), "long": Words(self.topic, count=5)}

    def output(self):
        return luigi.LocalTarget(f"data/{self.topic}/lengths.tsv")

    def run(self):
        with self.output().open("w") as out:
            for key, target in sorted(self.input().items()):
                lines = list(target.open("r"))
                out.write(f"{key}\t{len(lines)}\t{sum(len(x) for x in lines)}\n")


class Everything(luigi.WrapperTask):
    topics = luigi.ListParameter(default=["cats", "dogs"])

    def requires(self):
        return [Lengths(topic) for topic in self.topics]


class Broken(luigi.Task):
    def output(self):
        return luigi.LocalTarget("data/never.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("partial")
            raise ValueError("no luck")


class AfterBroken(luigi.Task):
    def requires(self):
        return Broken()

    def output(self):
        return luigi.LocalTarget("data/after.txt")


def scenario():
    import _harness

    target = luigi.LocalTarget("data/manual.txt")
    exists_before = target.exists()
    target.makedirs()
    with target.open("w") as f:
        f.write("by hand\n")
    moved = luigi.LocalTarget("data/moved.txt")
    target.move(moved.path)
    with luigi.LocalTarget("data/tmp-written.txt").temporary_path() as path, open(path, "w") as f:
        f.write("through a temporary path\n")
    return [
        {"exists_before": exists_before, "moved": moved.exists(), "gone": target.exists()},
        _harness.build([Everything()]),
        _harness.build([Everything(topics=["cats", "eels"])], workers=2),
        _harness.build([AfterBroken(), Lengths("owls")]),
    ]

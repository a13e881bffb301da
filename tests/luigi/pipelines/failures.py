"""Failing tasks, a broken requires(), a raising complete(), and what is reported."""

import luigi


class Fine(luigi.Task):
    def output(self):
        return luigi.LocalTarget("fine.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("fine\n")


class Fails(luigi.Task):
    def requires(self):
        return Fine()

    def output(self):
        return luigi.LocalTarget("fails.txt")

    def run(self):
        raise OSError("disk on fire")


class Downstream(luigi.Task):
    def requires(self):
        return Fails()

    def output(self):
        return luigi.LocalTarget("downstream.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("never\n")


class BadRequires(luigi.Task):
    def requires(self):
        raise KeyError("no such input")

    def output(self):
        return luigi.LocalTarget("bad.txt")


class BadComplete(luigi.Task):
    def complete(self):
        raise RuntimeError("cannot tell")


class Checked(luigi.Task):
    """Its own complete(), reading a marker file."""

    def complete(self):
        return luigi.LocalTarget("checked.marker").exists()

    def run(self):
        with open("checked.marker", "w") as marker:
            marker.write("checked\n")


def scenario():
    import _harness

    return [
        _harness.build([Downstream()]),
        _harness.build([BadRequires()]),
        _harness.build([BadComplete()]),
        _harness.build([Checked()]),
    ]

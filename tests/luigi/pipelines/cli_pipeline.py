"""Tasks to run from the command line, with Luigi's grammar."""

import luigi


class settings(luigi.Config):
    greeting = luigi.Parameter(default="hello")


class Base(luigi.Task):
    name = luigi.Parameter()
    suffix = luigi.Parameter(default="")

    def output(self):
        return luigi.LocalTarget(f"base-{self.name}{self.suffix}.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{settings().greeting} {self.name}\n")


class Greet(luigi.Task):
    """Greets someone, a few times."""

    name = luigi.Parameter(description="who to greet")
    times = luigi.IntParameter(default=1, description="how many times")
    shout = luigi.BoolParameter(description="in capitals")

    def requires(self):
        return Base(self.name)

    def output(self):
        return luigi.LocalTarget(f"greet-{self.name}-{self.times}-{self.shout}.txt")

    def run(self):
        with self.input().open() as src:
            line = src.read()
        with self.output().open("w") as out:
            out.write((line.upper() if self.shout else line) * self.times)


class Fails(luigi.Task):
    def output(self):
        return luigi.LocalTarget("fails.txt")

    def run(self):
        raise RuntimeError("as planned")


class NeedsInput(luigi.Task):
    def requires(self):
        return Absent()

    def output(self):
        return luigi.LocalTarget("needs-input.txt")


class Absent(luigi.ExternalTask):
    def output(self):
        return luigi.LocalTarget("absent.txt")


if __name__ == "__main__":
    luigi.run()

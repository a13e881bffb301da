"""MockTarget pipelines: data in memory, checked through MockFileSystem."""

from luigi.mock import MockFileSystem, MockTarget

import luigi


class Letters(luigi.Task):
    word = luigi.Parameter()

    def output(self):
        return MockTarget(f"/letters/{self.word}")

    def run(self):
        out = self.output().open("w")
        for letter in self.word:
            out.write(letter + "\n")
        out.close()


class Joined(luigi.Task):
    def requires(self):
        return [Letters("mock"), Letters("data")]

    def output(self):
        return MockTarget("/joined")

    def run(self):
        with self.output().open("w") as out:
            for target in self.input():
                with target.open("r") as letters:
                    out.write("".join(line.strip() for line in letters) + "\n")


def scenario():
    import _harness

    MockFileSystem().clear()
    first = _harness.build([Joined()])
    data = {path: blob.decode() for path, blob in sorted(MockFileSystem().get_all_data().items())}
    return [first, {"data": data, "exists": MockTarget("/joined").exists()}]

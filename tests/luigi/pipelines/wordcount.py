"""Counting words of external input files, with gzip, bytes and UTF-8 formats."""

from luigi.format import UTF8, Gzip, Nop

import luigi


class Text(luigi.ExternalTask):
    name = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"input/{self.name}.txt", format=UTF8)


class Count(luigi.Task):
    name = luigi.Parameter()

    def requires(self):
        return Text(self.name)

    def output(self):
        return luigi.LocalTarget(f"counts/{self.name}.tsv.gz", format=Gzip)

    def run(self):
        counts = {}
        with self.input().open("r") as text:
            for line in text:
                for word in line.split():
                    counts[word] = counts.get(word, 0) + 1
        out = self.output().open("w")
        for word, n in sorted(counts.items()):
            out.write(f"{word}\t{n}\n".encode())
        out.close()


class Decoded(luigi.Task):
    name = luigi.Parameter()

    def requires(self):
        return Count(self.name)

    def output(self):
        return luigi.LocalTarget(f"counts/{self.name}.bin", format=Nop)

    def run(self):
        with self.input().open("r") as packed, self.output().open("w") as out:
            out.write(packed.read())


def scenario():
    import _harness

    luigi.LocalTarget("input").makedirs()
    with luigi.LocalTarget("input/a.txt", format=UTF8).open("w") as f:
        f.write("der Bär und der Fuchs\nund der Hase\n")
    return [
        _harness.build([Decoded("a")]),
        _harness.build([Decoded("missing")]),
        _harness.build([Decoded("a"), Decoded("missing")]),
    ]

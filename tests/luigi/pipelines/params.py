"""Every kind of parameter: values, text forms, positional use, clone, round trips."""

import datetime
import enum
import json
import pathlib

import luigi


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Source(luigi.Task):
    label = luigi.Parameter(default="src")

    def output(self):
        return luigi.LocalTarget(f"source-{self.label}.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("source\n")


class Everything(luigi.Task):
    name = luigi.Parameter()
    note = luigi.OptionalParameter(default=None)
    count = luigi.IntParameter(default=2)
    maybe_count = luigi.OptionalIntParameter(default=None)
    ratio = luigi.FloatParameter(default=0.5)
    flag = luigi.BoolParameter()
    day = luigi.DateParameter(default=datetime.date(2026, 11, 23))
    month = luigi.MonthParameter(default=datetime.date(2026, 11, 1))
    year = luigi.YearParameter(default=datetime.date(2026, 1, 1))
    hour = luigi.DateHourParameter(default=datetime.datetime(2026, 11, 23, 5))
    minute = luigi.DateMinuteParameter(default=datetime.datetime(2026, 11, 23, 5, 30))
    second = luigi.DateSecondParameter(default=datetime.datetime(2026, 11, 23, 5, 30, 15))
    week = luigi.DateIntervalParameter(default=luigi.date_interval.Week(2026, 47))
    wait = luigi.TimeDeltaParameter(default=datetime.timedelta(days=1, hours=2))
    choice = luigi.ChoiceParameter(choices=["a", "b"], default="a")
    level = luigi.NumericalParameter(var_type=int, min_value=0, max_value=10, default=3)
    color = luigi.EnumParameter(enum=Color, default=Color.RED)
    colors = luigi.EnumListParameter(enum=Color, default=(Color.RED, Color.GREEN))
    items = luigi.ListParameter(default=[1, 2])
    pairs = luigi.TupleParameter(default=((1, 2), (3, 4)))
    options = luigi.DictParameter(default={"depth": 2})
    upstream = luigi.TaskParameter(default=Source)
    where = luigi.PathParameter(default=pathlib.Path("out"))
    maybe_where = luigi.OptionalPathParameter(default=None)
    secret = luigi.Parameter(default="hush", visibility=luigi.parameter.ParameterVisibility.PRIVATE)
    hidden = luigi.Parameter(default="h", visibility=luigi.parameter.ParameterVisibility.HIDDEN)
    batch = luigi.IntParameter(default=1, batch_method=max)
    side = luigi.Parameter(default="x", significant=False, positional=False)

    def requires(self):
        return self.upstream()

    def output(self):
        return luigi.LocalTarget(f"{self.where}/{self.name}-{self.count}-{self.day}.json")

    def run(self):
        with self.output().open("w") as out:
            json.dump(self.to_str_params(), out, indent=1, sort_keys=True)


def scenario():
    import _harness

    task = Everything("positional", None, 7)
    again = Everything.from_str_params(task.to_str_params())
    clone = task.clone(count=8)
    shown = Everything(
        "texts",
        choice="b",
        level=9,
        flag=True,
        items=[3],
        options={"k": "v"},
        month=datetime.date(2026, 2, 17),
    )
    names = [name for name, _ in Everything.get_params()]
    return [
        {
            "names": names,
            "positional": task.to_str_params(),
            "round_trip_equal": again == task,
            "clone": clone.to_str_params(),
            "shown": shown.to_str_params(only_significant=True, only_public=True),
            "significant": Everything.get_param_names(),
        },
        _harness.build([task, clone, shown]),
    ]

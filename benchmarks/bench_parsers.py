"""How long each parameter's parse() takes on 100,000-character hostile inputs.

The target (issue: hostile inputs are bounded) is 50 ms per call at most. The
fuzz tests (tests/test_parameters_fuzz.py) only check a looser bound that a
busy machine cannot trip, which still tells a linear parser from a quadratic
one; this script measures the figure itself. It times, for every parameter
class, parse() of each token of the fuzz tests repeated to 100,000 characters
(with the issue's own case), and prints the slowest per class.

    python benchmarks/bench_parsers.py [--length 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from asyncflow import ParameterError
from test_parameters_fuzz import PARAMETERS, TOKENS

TARGET_MS = 50.0


def _inputs(length: int) -> list[tuple[str, str]]:
    cases = [("'1w' + spaces + 'x'", "1w" + " " * (length - 3) + "x")]
    for token in TOKENS:
        cases.append((repr(token), (token * (length // len(token) + 1))[:length]))
        cases.append((f"'1' + {token!r}*n", "1" + (token * (length // len(token) + 1))[:length]))
    return cases


def _time(param: Any, text: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        with contextlib.suppress(ParameterError):
            param.parse(text)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N per input")
    args = parser.parse_args()
    cases = _inputs(args.length)
    print(f"{'parameter':<28} {'slowest ms':>10}  slowest input (of {len(cases)})")
    over = 0
    for name, param in PARAMETERS.items():
        worst, which = max((_time(param, text, args.repeat), label) for label, text in cases)
        over += worst > TARGET_MS
        print(f"{name:<28} {worst:>10.2f}  {which}")
    print(f"\n{over} of {len(PARAMETERS)} over the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()

"""Print a task's dependency tree with what is complete: ``print(print_tree(task))``.

From the shell: ``python -m asyncflow.luigi.tools.deps_tree --module pkg Task --param v``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from ..task import flatten

__all__ = ["print_tree"]

_GREEN = "\033[92m"
_BLUE = "\033[94m"
_END = "\033[0m"


def print_tree(task: Any, indent: str = "", last: bool = True) -> str:
    """The tree below ``task``: each task's name, parameters and COMPLETE or PENDING."""
    done = bool(task.complete())
    state = (_GREEN + "COMPLETE" if done else _BLUE + "PENDING") + _END
    params = task.to_str_params(only_significant=True)
    text = "\n" + indent
    if last:
        text += "└─--"
        indent += "    "
    else:
        text += "|---"
        indent += "|   "
    text += f"[{type(task).__name__}-{params} ({state})]"
    children = flatten(task.requires())
    for index, child in enumerate(children):
        text += print_tree(child, indent, index + 1 == len(children))
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Print the tree of the task a Luigi command line names."""
    from ..cmdline import CmdlineParser

    parsed = CmdlineParser(list(sys.argv[1:] if argv is None else argv))
    task = parsed.get_task_obj()
    with parsed.active():
        print(print_tree(task))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

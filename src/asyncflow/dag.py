"""Looking at a graph without running it: text, Mermaid and DOT, and the DAG-freeze check.

::

    graph = await asyncflow.graph.expand([Report(date=d)], probe=False)
    print(render_text(graph))

    # in your own test suite:
    def test_dag_is_frozen():
        asyncflow.check_dag(
            [Report(date=d) for d in days],
            families={"Report", "Transform", "ExtractRaw"},
        )
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence

import anyio

from ._redact import known_secrets, redact
from .errors import GraphError
from .graph import Graph, Node, expand
from .result import Status
from .task import Task, secret_texts

__all__ = ["check_dag", "render", "render_dot", "render_mermaid", "render_text"]

_MARKS = {
    None: "[ ]",
    Status.ALREADY_COMPLETE: "[x]",
    Status.MISSING: "[?]",
    Status.FAILED: "[!]",
}


_INDENT = "    "
_MAX_INDENT = 20
"""Levels of indentation shown. Deeper lines stay at that column and say their
depth: a chain of N tasks prints in O(N) characters, not O(N²)."""


def render_text(graph: Graph) -> str:
    """The graph as an indented tree from the requested tasks.

    ``[x]`` complete, ``[ ]`` to run, ``[?]`` missing external input, ``[!]``
    failed while building the graph. A task met again is shown once, then
    referred to with ``(see above)``. Beyond 20 levels the indentation stops
    growing and each line starts with its depth (``depth 21: [ ] ...``).
    """
    lines: list[str] = []
    shown: set[int] = set()
    deepest = _INDENT * _MAX_INDENT
    stack: list[tuple[Node, int]] = [(root, 0) for root in reversed(graph.roots)]
    while stack:
        node, depth = stack.pop()
        mark = _MARKS.get(node.status, "[ ]")
        indent = _INDENT * depth if depth <= _MAX_INDENT else f"{deepest}depth {depth}: "
        if id(node) in shown and node.deps:
            lines.append(f"{indent}{mark} {node.task!r} (see above)")
            continue
        shown.add(id(node))
        lines.append(f"{indent}{mark} {node.task!r}")
        stack.extend((dep, depth + 1) for dep in reversed(node.deps))
    return "\n".join(lines)


def render_mermaid(graph: Graph) -> str:
    """The graph as a Mermaid flowchart; arrows go from a requirement to its user."""
    ids = {id(node): f"n{index}" for index, node in enumerate(graph.order)}
    lines = ["flowchart TD"]
    for node in graph.order:
        label = repr(node.task).replace('"', "'")
        lines.append(f'    {ids[id(node)]}["{label}"]')
    for node in graph.order:
        lines.extend(f"    {ids[id(dep)]} --> {ids[id(node)]}" for dep in node.deps)
    return "\n".join(lines)


def render_dot(graph: Graph) -> str:
    """The graph in Graphviz DOT; edges go from a requirement to its user."""
    lines = ["digraph asyncflow {", "    rankdir=LR;"]
    for node in graph.order:
        label = repr(node.task).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'    "{node.task_id}" [label="{label}"];')
    for node in graph.order:
        lines.extend(f'    "{dep.task_id}" -> "{node.task_id}";' for dep in node.deps)
    lines.append("}")
    return "\n".join(lines)


_RENDERERS = {"text": render_text, "mermaid": render_mermaid, "dot": render_dot}


def render(graph: Graph, fmt: str = "text") -> str:
    """Render in ``fmt``: ``"text"``, ``"mermaid"`` or ``"dot"``.

    Raises:
        ValueError: an unknown format.
    """
    try:
        renderer = _RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown graph format {fmt!r} (use text, mermaid or dot)") from None
    return renderer(graph)


def check_dag(tasks: Task | Iterable[Task], *, families: Collection[str] | None = None) -> Graph:
    """Expand the whole graph (probing nothing) and check it: the DAG-freeze test.

    Call it from your own tests over a representative date range. It runs its
    own event loop, so call it from synchronous code.

    Args:
        tasks: the tasks to expand.
        families: if given, every task in the graph must belong to one of these
            families; a new family fails the check until it is added.

    Returns:
        The graph, for further assertions.

    Raises:
        CycleError: the requirements form a cycle (the message shows it).
        GraphError: a task's requires()/output() raised, or a family is unknown.
    """
    roots: Sequence[Task] = [tasks] if isinstance(tasks, Task) else list(tasks)
    graph = anyio.run(functools.partial(expand, roots, probe=False), backend="asyncio")
    broken = [node for node in graph.order if node.status is Status.FAILED]
    if broken:
        # The errors are the tasks' own text, which may quote a hidden value.
        secrets = known_secrets(secret_texts(node.task for node in graph.order))
        details = redact("; ".join(str(node.error) for node in broken[:5]), secrets)
        raise GraphError(f"{len(broken)} task(s) cannot be expanded: {details}")
    if families is not None:
        unknown = sorted({n.task.task_family for n in graph.order} - set(families))
        if unknown:
            examples = {
                family: next(n.task for n in graph.order if n.task.task_family == family)
                for family in unknown
            }
            shown = ", ".join(f"{f} (e.g. {t!r})" for f, t in examples.items())
            raise GraphError(f"unknown task families in the graph: {shown}")
    return graph

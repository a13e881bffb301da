"""Status pages, a JSON API and ``/metrics`` over the journal, as an ASGI app.

::

    from fastapi import FastAPI
    from asyncflow.web import create_app

    app = FastAPI()
    app.mount("/pipelines", create_app(journal=".asyncflow/journal.db"))

or, from the command line, ``asyncflow ui --journal .asyncflow/journal.db``.

Pages (server-rendered; they work without JavaScript, and refresh themselves
while something runs): ``/`` the runs, ``/runs/{run_id}`` one run with its
tasks drawn by status, ``/tasks/{task_id}`` one task's attempts across runs,
``/search?q=`` task ids by prefix (a family's name finds its tasks) or
substring. JSON: ``/api/runs``, ``/api/runs/{run_id}``,
``/api/tasks/{task_id}``, ``/api/search``. Prometheus: ``/metrics``.

The app only reads: every route is GET. It reads the journal through its
history API, opening the file for each request, so runs of other processes
show up as they go.

Needs the ``web`` extra: ``pip install 'asyncflow[web]'`` (Starlette, Jinja2,
prometheus-client; uvicorn for ``asyncflow ui``).
"""

from ._app import create_app

__all__ = ["create_app"]

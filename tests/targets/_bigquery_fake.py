"""An in-process fake of BigQuery's REST API, under google-cloud-bigquery's own client.

No BigQuery emulator is reachable here, so the client gets a transport (a
``requests`` adapter mounted on google-auth's ``AuthorizedSession`` with
anonymous credentials) that answers the REST calls itself, from an in-memory
DuckDB database. Everything above the transport is the real client library:
it builds the requests (load jobs with their configuration, multipart and
resumable uploads, ``jobs.query`` with parameters, ``tabledata.list``) and
parses the answers. Nothing opens a socket. Every request is kept in
:attr:`FakeBigQuery.calls` for tests to check what was asked.

The part of BigQuery faked: tables (``tables.insert/get/delete``, partition
decorators included), load jobs from parquet with the write dispositions and
ingestion-time or column partitioning, ``jobs.query`` on standard SQL that
DuckDB also reads (backticked names, ``@name`` parameters), and
``tabledata.list``. Not faked: datasets (any dataset exists), IAM, billing.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import io
import json
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import requests
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import bigquery
from requests.adapters import BaseAdapter

PROJECT = "test-project"
_HIDDEN = "__partition"  # the fake's own column: a row's partition decorator
_BQ_TO_DUCKDB = {
    "INTEGER": "BIGINT",
    "INT64": "BIGINT",
    "FLOAT": "DOUBLE",
    "FLOAT64": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "BOOL": "BOOLEAN",
    "STRING": "VARCHAR",
    "TIMESTAMP": "TIMESTAMPTZ",
    "DATETIME": "TIMESTAMP",
    "DATE": "DATE",
    "BYTES": "BLOB",
}
_DECORATOR_FORMATS = {4: "%Y", 6: "%Y%m", 8: "%Y%m%d", 10: "%Y%m%d%H"}


class BigQueryFailure(Exception):
    """Answered as a BigQuery error response."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


@dataclass
class Call:
    """One request the client made."""

    method: str
    path: str
    params: dict[str, str]
    body: Any = None
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Table:
    schema: list[dict[str, str]]
    time_partitioning: dict[str, Any] | None = None


@dataclass
class _Upload:
    metadata: dict[str, Any]
    data: bytearray = field(default_factory=bytearray)


def _arrow_type(kind: pa.DataType) -> str:
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    if pa.types.is_integer(kind):
        return "INTEGER"
    if pa.types.is_floating(kind):
        return "FLOAT"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMP" if kind.tz is not None else "DATETIME"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "BYTES"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "STRING"
    raise BigQueryFailure(400, "invalid", f"Unsupported parquet type {kind}")


def _duckdb_type(name: str) -> str:
    name = name.upper()
    if name in ("BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "TINYINT"):
        return "INTEGER"
    if name in ("DOUBLE", "FLOAT", "REAL") or name.startswith("DECIMAL"):
        return "FLOAT"
    if name == "BOOLEAN":
        return "BOOLEAN"
    if name.startswith("TIMESTAMP WITH TIME ZONE"):
        return "TIMESTAMP"
    if name.startswith("TIMESTAMP"):
        return "DATETIME"
    if name == "DATE":
        return "DATE"
    return "STRING"


def _json_value(value: Any, kind: str) -> Any:
    """A cell as BigQuery's JSON rows carry it (text; timestamps as int microseconds)."""
    if value is None:
        return None
    if kind == "BOOLEAN":
        return "true" if value else "false"
    if kind == "TIMESTAMP":
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return str((value - epoch) // dt.timedelta(microseconds=1))
    if kind in ("DATE", "DATETIME"):
        return value.isoformat()
    if kind == "FLOAT":
        return repr(float(value))
    return str(value)


def _query_value(parameter: Mapping[str, Any]) -> Any:
    kind = parameter["parameterType"]["type"]
    value = parameter["parameterValue"].get("value")
    if value is None:
        return None
    if kind in ("INT64", "INTEGER"):
        return int(value)
    if kind in ("FLOAT64", "FLOAT"):
        return float(value)
    if kind in ("BOOL", "BOOLEAN"):
        return value == "true"
    return value


class FakeBigQuery(BaseAdapter):
    """BigQuery's REST API for one project, in memory (a ``requests`` adapter)."""

    def __init__(self, project: str = PROJECT) -> None:
        super().__init__()
        self.project = project
        self.calls: list[Call] = []
        self.fail_load_jobs = False  # load jobs end with an error (the partition untouched)
        self._db = duckdb.connect()
        self._tables: dict[str, _Table] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._uploads: dict[str, _Upload] = {}
        self._lock = threading.Lock()

    def client(self) -> bigquery.Client:
        """A real ``google.cloud.bigquery.Client`` whose HTTP goes to this fake."""
        session = AuthorizedSession(AnonymousCredentials())
        session.mount("https://", self)
        session.mount("http://", self)
        return bigquery.Client(
            project=self.project, credentials=AnonymousCredentials(), _http=session
        )

    def close(self) -> None:
        self._db.close()

    # Inspection helpers for tests.

    def rows(self, table: str, decorator: str | None = None) -> list[tuple[Any, ...]]:
        """The rows of ``project.dataset.table`` (of one partition), sorted."""
        where, params = (f" WHERE {_HIDDEN} = ?", [decorator]) if decorator else ("", [])
        with self._lock:
            names = [f["name"] for f in self._tables[table].schema]
            columns = ", ".join(f'"{name}"' for name in names)
            return sorted(
                self._db.execute(f'SELECT {columns} FROM "{table}"{where}', params).fetchall()
            )

    def jobs_of_kind(self, kind: str) -> list[dict[str, Any]]:
        """The configurations of the jobs inserted, of one kind ("load")."""
        return [c.body["configuration"][kind] for c in self.calls if _is_job_insert(c, kind)]

    # The transport.

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        url = urlsplit(request.url or "")
        params = {key: values[-1] for key, values in parse_qs(url.query).items()}
        raw = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        headers = {
            key.lower(): value.decode() if isinstance(value, bytes) else value
            for key, value in request.headers.items()
        }
        call = Call(request.method or "GET", url.path, params, data=raw, headers=headers)
        content_type = headers.get("content-type", "")
        if raw and content_type.startswith("application/json"):
            call.body = json.loads(raw)
        with self._lock:
            self.calls.append(call)
            try:
                status, payload, headers = self._route(call, content_type)
            except BigQueryFailure as failure:
                status, payload, headers = failure.code, _error(failure), {}
            except duckdb.CatalogException as error:
                status, payload, headers = (
                    404,
                    _error(BigQueryFailure(404, "notFound", str(error))),
                    {},
                )
            except duckdb.Error as error:
                status, payload, headers = (
                    400,
                    _error(BigQueryFailure(400, "invalidQuery", str(error))),
                    {},
                )
        response = requests.Response()
        response.status_code = status
        response.url = request.url or ""
        response.request = request
        response.headers["content-type"] = "application/json; charset=UTF-8"
        response.headers.update(headers)
        response._content = json.dumps(payload).encode()
        response.reason = "OK" if status < 300 else "Error"
        return response

    def _route(self, call: Call, content_type: str) -> tuple[int, Any, dict[str, str]]:
        path = call.path
        if match := re.fullmatch(r"/upload/bigquery/v2/projects/([^/]+)/jobs", path):
            return self._upload(call, content_type, match.group(1))
        match = re.fullmatch(r"/bigquery/v2/projects/([^/]+)(/.*)", path)
        if match is None:
            raise BigQueryFailure(404, "notFound", f"no such API: {path}")
        project, rest = match.groups()
        if rest == "/queries" and call.method == "POST":
            return 200, self._query(project, call.body), {}
        if (job := re.fullmatch(r"/jobs/([^/]+)", rest)) and call.method == "GET":
            if job.group(1) not in self._jobs:
                raise BigQueryFailure(404, "notFound", f"Not found: Job {job.group(1)}")
            return 200, self._jobs[job.group(1)], {}
        if (tables := re.fullmatch(r"/datasets/([^/]+)/tables", rest)) and call.method == "POST":
            return 200, self._insert_table(f"{project}.{tables.group(1)}", call.body), {}
        if table := re.fullmatch(r"/datasets/([^/]+)/tables/([^/]+?)(/data)?", rest):
            dataset, name, data = table.groups()
            return 200, self._table_call(call, f"{project}.{dataset}", name, bool(data)), {}
        raise BigQueryFailure(404, "notFound", f"no such API: {call.method} {path}")

    # Uploads and load jobs.

    def _upload(
        self, call: Call, content_type: str, project: str
    ) -> tuple[int, Any, dict[str, str]]:
        kind = call.params.get("uploadType")
        if kind == "multipart":
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + call.data
            )
            parts = list(message.iter_parts())  # type: ignore[attr-defined]
            metadata = json.loads(parts[0].get_content())
            call.body = metadata
            data = parts[1].get_payload(decode=True)
            return 200, self._run_load(project, metadata, data), {}
        if kind == "resumable" and call.method == "POST":
            upload_id = uuid.uuid4().hex
            self._uploads[upload_id] = _Upload(json.loads(call.data))
            call.body = self._uploads[upload_id].metadata
            location = (
                f"https://bigquery.googleapis.com/upload/bigquery/v2/projects/{project}/jobs"
                f"?uploadType=resumable&upload_id={upload_id}"
            )
            return 200, {}, {"Location": location}
        if kind == "resumable" and call.method == "PUT":
            upload = self._uploads[call.params["upload_id"]]
            upload.data += call.data
            # "bytes FIRST-LAST/TOTAL": not the last chunk yet -> 308 and the range kept.
            span = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", call.headers.get("content-range", ""))
            if span and int(span.group(2)) + 1 < int(span.group(3)):
                return 308, {}, {"Range": f"bytes=0-{span.group(2)}"}
            return 200, self._run_load(project, upload.metadata, bytes(upload.data)), {}
        raise BigQueryFailure(400, "invalid", f"unsupported upload {kind!r}")

    def _run_load(self, project: str, metadata: dict[str, Any], data: bytes) -> dict[str, Any]:
        job_id = metadata.get("jobReference", {}).get("jobId") or uuid.uuid4().hex
        job: dict[str, Any] = {
            "kind": "bigquery#job",
            "id": f"{project}:US.{job_id}",
            "jobReference": {"projectId": project, "jobId": job_id, "location": "US"},
            "configuration": metadata["configuration"],
            "status": {"state": "DONE"},
        }
        try:
            if self.fail_load_jobs:
                raise BigQueryFailure(500, "internalError", "load job failed (injected)")
            rows = self._load(metadata["configuration"]["load"], data)
            job["statistics"] = {"load": {"outputRows": str(rows)}}
        except (BigQueryFailure, duckdb.Error, pa.ArrowException) as error:
            reason = error.reason if isinstance(error, BigQueryFailure) else "invalid"
            job["status"]["errorResult"] = {"reason": reason, "message": str(error)}
            job["status"]["errors"] = [job["status"]["errorResult"]]
        self._jobs[job_id] = job
        return job

    def _load(self, config: dict[str, Any], data: bytes) -> int:
        if config.get("sourceFormat") != "PARQUET":
            raise BigQueryFailure(400, "invalid", f"source format {config.get('sourceFormat')}")
        ref = config["destinationTable"]
        name, _, decorator = ref["tableId"].partition("$")
        table = f"{ref['projectId']}.{ref['datasetId']}.{name}"
        frame = pq.read_table(io.BytesIO(data))
        schema = [
            {"name": f.name, "type": _arrow_type(f.type), "mode": "NULLABLE"} for f in frame.schema
        ]
        partitioning = config.get("timePartitioning")
        disposition = config.get("writeDisposition", "WRITE_APPEND")
        existing = self._tables.get(table)
        if existing is None:
            if config.get("createDisposition") == "CREATE_NEVER":
                raise BigQueryFailure(404, "notFound", f"Not found: Table {table}")
            if decorator and partitioning is None:
                raise BigQueryFailure(
                    400, "invalid", f"{table} is not partitioned: no ${decorator}"
                )
            self._create(table, _Table(schema, partitioning))
        elif partitioning is not None and partitioning != existing.time_partitioning:
            raise BigQueryFailure(
                400, "invalid", f"Incompatible table partitioning specification for {table}"
            )
        elif not decorator and disposition == "WRITE_TRUNCATE":
            self._db.execute(f'DROP TABLE "{table}"')
            self._create(table, _Table(schema, existing.time_partitioning))
        spec = self._tables[table].time_partitioning or {}
        self._db.register("__load", frame)
        try:
            if decorator and spec.get("field"):
                fmt = _DECORATOR_FORMATS[len(decorator)]
                outside = self._db.execute(
                    f'SELECT count(*) FROM __load WHERE strftime("{spec["field"]}", ?) <> ?',
                    [fmt, decorator],
                ).fetchone()
                if outside and outside[0]:
                    raise BigQueryFailure(
                        400, "invalid", f"{outside[0]} rows are outside partition {decorator}"
                    )
            where, params = (f" WHERE {_HIDDEN} = ?", [decorator]) if decorator else ("", [])
            if disposition == "WRITE_TRUNCATE":
                self._db.execute(f'DELETE FROM "{table}"{where}', params)
            elif disposition == "WRITE_EMPTY":
                count = self._db.execute(
                    f'SELECT count(*) FROM "{table}"{where}', params
                ).fetchone()
                if count and count[0]:
                    raise BigQueryFailure(400, "duplicate", f"{table} is not empty")
            self._db.execute(
                f'INSERT INTO "{table}" BY NAME SELECT *, ? AS {_HIDDEN} FROM __load',
                [decorator or None],
            )
        finally:
            self._db.unregister("__load")
        return frame.num_rows

    def _create(self, table: str, spec: _Table) -> None:
        columns = [f'"{f["name"]}" {_BQ_TO_DUCKDB[f["type"]]}' for f in spec.schema]
        self._db.execute(f'CREATE TABLE "{table}" ({", ".join([*columns, f"{_HIDDEN} VARCHAR"])})')
        self._tables[table] = spec

    # Tables.

    def _insert_table(self, dataset: str, body: dict[str, Any]) -> dict[str, Any]:
        table = f"{dataset}.{body['tableReference']['tableId']}"
        if table in self._tables:
            raise BigQueryFailure(409, "duplicate", f"Already Exists: Table {table}")
        fields = [{**f, "mode": f.get("mode", "NULLABLE")} for f in body["schema"]["fields"]]
        self._create(table, _Table(fields, body.get("timePartitioning")))
        return self._resource(table)

    def _resource(self, table: str) -> dict[str, Any]:
        project, dataset, name = table.split(".")
        spec = self._tables[table]
        resource: dict[str, Any] = {
            "kind": "bigquery#table",
            "id": f"{project}:{dataset}.{name}",
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": name},
            "schema": {"fields": spec.schema},
            "type": "TABLE",
        }
        if spec.time_partitioning is not None:
            resource["timePartitioning"] = spec.time_partitioning
        return resource

    def _table_call(self, call: Call, dataset: str, name: str, data: bool) -> Any:
        name, _, decorator = name.partition("$")
        table = f"{dataset}.{name}"
        if table not in self._tables:
            raise BigQueryFailure(404, "notFound", f"Not found: Table {table}")
        if data and call.method == "GET":
            return self._list_rows(table, decorator, call.params)
        if call.method == "GET":
            return self._resource(table)
        if call.method == "DELETE":
            if decorator:
                self._db.execute(f'DELETE FROM "{table}" WHERE {_HIDDEN} = ?', [decorator])
            else:
                self._db.execute(f'DROP TABLE "{table}"')
                del self._tables[table]
            return {}
        raise BigQueryFailure(400, "invalid", f"unsupported {call.method} on {table}")

    def _list_rows(self, table: str, decorator: str, params: dict[str, str]) -> dict[str, Any]:
        schema = {f["name"]: f["type"] for f in self._tables[table].schema}
        names = (
            params["selectedFields"].split(",") if params.get("selectedFields") else list(schema)
        )
        where, args = (f" WHERE {_HIDDEN} = ?", [decorator]) if decorator else ("", [])
        columns = ", ".join(f'"{name}"' for name in names)
        rows = self._db.execute(f'SELECT {columns} FROM "{table}"{where}', args).fetchall()
        return {
            "kind": "bigquery#tableDataList",
            "totalRows": str(len(rows)),
            "rows": [
                {"f": [{"v": _json_value(v, schema[n])} for n, v in zip(names, row, strict=True)]}
                for row in rows
            ],
        }

    # Queries.

    def _query(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("useLegacySql", True):
            raise BigQueryFailure(400, "invalidQuery", "legacy SQL is not faked")

        def name(match: re.Match[str]) -> str:
            parts = match.group(1).split(".")
            if len(parts) == 2:
                parts.insert(0, project)
            table = ".".join(parts)
            if table not in self._tables:
                raise BigQueryFailure(404, "notFound", f"Not found: Table {table}")
            return f'"{table}"'

        sql = re.sub(r"`([^`]+)`", name, body["query"])
        sql = re.sub(r"@(\w+)", r"$\1", sql)
        params = {p["name"]: _query_value(p) for p in body.get("queryParameters", [])}
        cursor = self._db.execute(sql, params)
        job_id = uuid.uuid4().hex
        result: dict[str, Any] = {
            "kind": "bigquery#queryResponse",
            "jobReference": {"projectId": project, "jobId": job_id, "location": "US"},
            "jobComplete": True,
        }
        if sql.lstrip().upper().startswith("SELECT"):
            kinds = [(d[0], _duckdb_type(str(d[1]))) for d in cursor.description or []]
            rows = cursor.fetchall()
            result["schema"] = {"fields": [{"name": n, "type": k} for n, k in kinds]}
            result["rows"] = [
                {"f": [{"v": _json_value(v, k)} for (_, k), v in zip(kinds, row, strict=True)]}
                for row in rows
            ]
            result["totalRows"] = str(len(rows))
        else:
            affected = cursor.fetchone()
            result["numDmlAffectedRows"] = str(affected[0] if affected else 0)
            result["totalRows"] = "0"
            result["schema"] = {"fields": []}
        return result


def _is_job_insert(call: Call, kind: str) -> bool:
    return (
        call.method == "POST"
        and call.path.endswith("/jobs")
        and isinstance(call.body, dict)
        and kind in call.body.get("configuration", {})
    )


def _error(failure: BigQueryFailure) -> dict[str, Any]:
    status = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}
    return {
        "error": {
            "code": failure.code,
            "message": str(failure),
            "errors": [{"reason": failure.reason, "message": str(failure)}],
            "status": status.get(failure.code, "INTERNAL"),
        }
    }

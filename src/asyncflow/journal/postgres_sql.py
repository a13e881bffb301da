"""Every statement of the PostgreSQL journal, written out whole, and its schema.

The schema is versioned like the SQLite journal's: ``asyncflow_schema`` holds
the version, and version *n* means migrations 1..n have been applied. A
database with tables but no ``asyncflow_schema`` is not ours and is refused.

Times of history (``started``, ``ended``) are the recording process's wall
clock in epoch seconds, as in SQLite. Times of leases and of run liveness
(``since``, ``expires``, ``released``) are the database's own clock
(``timestamptz``, set with ``now()``): processes on different hosts judge
expiry by one clock, never by their own.

Statements take their many ids as one array parameter (``$1::text[]``), or
the largest as one string split by the server, and attempt rows as one array
(or string) per column (``unnest``): one round trip per batch.
"""

from __future__ import annotations

from typing import Final

from .records import AttemptStatus

__all__ = [
    "ANY_INTERRUPTED",
    "ANY_RIVAL",
    "ATTEMPTS_BY_ID",
    "BEGIN_RUN",
    "CLAIM",
    "CLAIM_NEW",
    "CLAIM_SOME",
    "COUNT_REQUESTED",
    "COUNT_RUNS",
    "COUNT_RUNS_OF_FAMILY",
    "DONE_SINCE",
    "FAMILY_COUNTS",
    "FIND_RUNS",
    "FIND_RUNS_OF_FAMILY",
    "HELD",
    "INSERT_REQUESTED",
    "LEASE_STATES",
    "MIGRATIONS",
    "NEW_RUN_KEY",
    "PRIOR_ATTEMPTS",
    "PRUNE_ATTEMPTS",
    "PRUNE_COUNT",
    "PRUNE_COUNT_LEASES",
    "PRUNE_KEPT",
    "PRUNE_KEYS",
    "PRUNE_LEASES",
    "PRUNE_REQUESTS",
    "PRUNE_RUNS",
    "PRUNE_RUN_KEYS",
    "PRUNE_RUN_ROWS",
    "RECOVER",
    "REFUSED",
    "RELEASE",
    "RENEW",
    "REQUESTED",
    "RUN",
    "RUNS",
    "RUN_ATTEMPTS",
    "RUN_ATTEMPT_PAGE",
    "RUN_COUNTS",
    "RUN_SUMMARY",
    "RUN_TASK_PAGE",
    "SCHEMA_LOCK",
    "SCHEMA_VERSION",
    "SET_STATUS",
    "SUCCEEDED",
    "SUCCEEDED_UNDER",
    "SUMMARY_COUNTS",
    "TASKS_CONTAINING",
    "TASKS_STARTING",
    "TASK_ATTEMPTS",
    "TASK_COUNTS",
    "TASK_STATES",
    "UPSERT_RUN",
    "WITH_STATUS",
    "WRITE_ATTEMPTS",
    "WRITE_NEW",
]

SCHEMA_LOCK: Final = 0x6166_6A6F_7572_6E6C  # "afjournl": the advisory lock around migrations

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 1: runs, attempts, leases (with fencing tokens), run keys, requested lists.
    (
        "CREATE TABLE asyncflow_schema (version integer NOT NULL)",
        "INSERT INTO asyncflow_schema (version) VALUES (0)",
        """
        CREATE TABLE runs (
            run_id  text PRIMARY KEY,
            seq     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- begin order
            status  text NOT NULL,
            started double precision NOT NULL,
            ended   double precision,
            host    text NOT NULL,
            pid     integer NOT NULL,
            version text NOT NULL,
            expires timestamptz NOT NULL  -- liveness deadline, pushed on by the heartbeat
        )
        """,
        "CREATE INDEX runs_started ON runs (started, seq)",
        "CREATE INDEX runs_running ON runs (run_id) WHERE status = 'running'",
        """
        CREATE TABLE run_requests (
            run_id    text PRIMARY KEY,
            requested text NOT NULL  -- JSON array of task ids
        )
        """,
        # The attempts of a key are ids key << 32 .. key << 32 | 0xFFFFFFFF (see rows.py).
        """
        CREATE TABLE run_keys (
            key    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id text NOT NULL
        )
        """,
        "CREATE INDEX run_keys_run ON run_keys (run_id)",
        # task_id in byte order ("C"), so a prefix is one range of the index.
        """
        CREATE TABLE attempts (
            id            bigint PRIMARY KEY,
            run_id        text NOT NULL,
            task_id       text COLLATE "C" NOT NULL,
            family        text NOT NULL,
            params        text NOT NULL,     -- JSON object, parameter name -> text
            attempt       integer NOT NULL,  -- 1, 2, ...; 0 when nothing started
            started       double precision,
            status        text NOT NULL,
            ended         double precision,
            duration      double precision,
            error_type    text,
            error_message text,
            traceback     text,
            worker        text
        )
        """,
        "CREATE INDEX attempts_task ON attempts (task_id, status)",
        "CREATE INDEX attempts_family ON attempts (family, run_id)",
        "CREATE INDEX attempts_running ON attempts (run_id) WHERE status = 'running'",
        # token: the fencing token of the take (from lease_tokens, which only grows);
        # a success or a release under an older token than the task's is refused.
        "CREATE SEQUENCE lease_tokens",
        """
        CREATE TABLE leases (
            task_id      text PRIMARY KEY,
            run_id       text NOT NULL,
            host         text NOT NULL,
            pid          integer NOT NULL,
            since        timestamptz NOT NULL,
            expires      timestamptz NOT NULL,
            ttl          double precision NOT NULL,
            token        bigint NOT NULL,
            outcome      text,  -- NULL while held; success/failed/abandoned once let go
            released     timestamptz,
            prev_outcome text   -- how the previous holder let go
        )
        """,
        "CREATE INDEX leases_held ON leases (run_id) WHERE outcome IS NULL",
    ),
    # 2: what a running attempt last said of itself (set_status_message(),
    # set_progress_percentage(), set_tracking_url()); NULL when never said.
    (
        """
        ALTER TABLE attempts
            ADD COLUMN status_message text,
            ADD COLUMN progress_percentage double precision,
            ADD COLUMN tracking_url text
        """,
    ),
    # 3: a lease lives as long as its holder's run (runs.expires, one row the heartbeat
    # pushes on, instead of every lease's own expiry: a heartbeat of a run holding
    # 100,000 leases rewrote them all, 0.9 s every 10 s); a run's requested list (tens
    # of kilobytes of JSON for a large run) compressed with lz4, five times cheaper to
    # write than the default (servers without lz4, built without it or before
    # PostgreSQL 14, keep the default).
    (
        "DROP INDEX leases_held",
        "ALTER TABLE leases DROP COLUMN expires, DROP COLUMN ttl",
        """
        DO $$ BEGIN
            EXECUTE 'ALTER TABLE run_requests ALTER COLUMN requested SET COMPRESSION lz4';
        EXCEPTION WHEN feature_not_supported OR syntax_error THEN NULL;
        END $$
        """,
    ),
)

SCHEMA_VERSION: Final = len(MIGRATIONS)

# --------------------------------------------------------------------- writing

NEW_RUN_KEY: Final = "INSERT INTO run_keys (run_id) VALUES ($1) RETURNING key"

UPSERT_RUN: Final = """
    INSERT INTO runs (run_id, status, started, ended, host, pid, version, expires)
    VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
    ON CONFLICT (run_id) DO UPDATE SET
        status = excluded.status, ended = excluded.ended,
        expires = greatest(runs.expires, excluded.expires)
"""
# A run begun, in one round trip: its row, its requested list, its key, and its
# rivals (ANY_RIVAL): the runs going on, and the greatest seq before it (any run
# begun after that may be a rival; the run itself is no rival of its own). Sent
# again after a lost connection, when the first sending had committed, it finds
# the same rivals: the greatest seq is taken below the run's own (the run's row
# is then there; its second key is never used).
BEGIN_RUN: Final = """
    WITH run AS (
        INSERT INTO runs (run_id, status, started, ended, host, pid, version, expires)
        VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
        ON CONFLICT (run_id) DO UPDATE SET
            status = excluded.status, ended = excluded.ended,
            expires = greatest(runs.expires, excluded.expires)
    ),
    requested AS (
        INSERT INTO run_requests (run_id, requested) VALUES ($1, $9)
        ON CONFLICT (run_id) DO NOTHING
    ),
    key AS (
        INSERT INTO run_keys (run_id) VALUES ($1) RETURNING key
    )
    SELECT (SELECT key FROM key),
           coalesce((SELECT array_agg(run_id) FROM runs
                     WHERE status = 'running' AND run_id != $1), '{}'),
           coalesce((SELECT max(seq) FROM runs
                     WHERE seq < coalesce((SELECT seq FROM runs WHERE run_id = $1),
                                          9223372036854775807)), 0)
"""
# A run id begun again keeps the list it was first begun with.
INSERT_REQUESTED: Final = """
    INSERT INTO run_requests (run_id, requested) VALUES ($1, $2)
    ON CONFLICT (run_id) DO NOTHING
"""
# A batch of attempt rows, one statement, one round trip: attempts begun since the
# last batch are new rows, inserted plainly ($1..$14, one array per column); rows
# written before and changed since are upserted ($15..$28). Successes under a
# lease are fenced in the same statement ($29..$31: run id, task id, the token the
# attempt held): the leases' rows are locked (FOR KEY SHARE, which no take can
# get past) until it commits, and a success whose task was taken since with a
# greater token is written as a failed attempt naming the new holder. The
# refused ones come back. A column may come shorter than the ids (empty when it
# holds no value but NULL): unnest pads it with NULLs. The leases are looked up
# one by one in task id order (a nested loop over the primary key, whatever the
# planner thinks of the table's size): a join or ``= ANY`` may be planned as a
# scan of every lease ever taken, for each batch.
WRITE_ATTEMPTS: Final = """
    WITH fence AS (
        SELECT * FROM unnest($29::text[], $30::text[], $31::bigint[]) AS f (run_id, task_id, token)
    ),
    locked AS (
        SELECT l.task_id, l.run_id, l.token
        FROM (SELECT DISTINCT task_id FROM fence ORDER BY task_id) AS f,
        LATERAL (SELECT task_id, run_id, token FROM leases WHERE leases.task_id = f.task_id
                 FOR KEY SHARE) AS l
    ),
    stale AS (
        SELECT f.run_id, f.task_id, f.token AS held, locked.run_id AS holder, locked.token,
               format('%s: success not journaled: while this attempt ran (lease token %s), '
                      'its lease lapsed and was taken over by run %s (token %s); '
                      'that holder''s outcome stands',
                      f.task_id, f.token, locked.run_id, locked.token) AS why
        FROM fence AS f JOIN locked ON locked.task_id = f.task_id AND locked.token > f.token
    ),
    rows AS (
        SELECT a.id, a.run_id, a.task_id, a.family, a.params, a.attempt, a.started,
               a.status, a.ended, a.duration, a.error_type, a.error_message, a.traceback,
               a.worker, false AS changed
        FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                    $6::integer[], $7::float8[], $8::text[], $9::float8[], $10::float8[],
                    $11::text[], $12::text[], $13::text[], $14::text[])
             AS a (id, run_id, task_id, family, params, attempt, started, status, ended,
                   duration, error_type, error_message, traceback, worker)
        UNION ALL
        SELECT a.*, true
        FROM unnest($15::bigint[], $16::text[], $17::text[], $18::text[], $19::text[],
                    $20::integer[], $21::float8[], $22::text[], $23::float8[], $24::float8[],
                    $25::text[], $26::text[], $27::text[], $28::text[])
             AS a (id, run_id, task_id, family, params, attempt, started, status, ended,
                   duration, error_type, error_message, traceback, worker)
    ),
    fenced AS (
        SELECT r.id, r.run_id, r.task_id, r.family, r.params, r.attempt, r.started,
               CASE WHEN s.why IS NULL THEN r.status ELSE 'failed' END AS status,
               r.ended, r.duration,
               CASE WHEN s.why IS NULL THEN r.error_type ELSE 'asyncflow.LeaseLost' END
                   AS error_type,
               coalesce(s.why, r.error_message) AS error_message,
               coalesce(s.why, r.traceback) AS traceback,
               r.worker, r.changed
        FROM rows AS r LEFT JOIN stale AS s
        ON s.run_id = r.run_id AND s.task_id = r.task_id AND r.status = 'success'
    ),
    inserted AS (
        INSERT INTO attempts (id, run_id, task_id, family, params, attempt, started, status,
                              ended, duration, error_type, error_message, traceback, worker)
        SELECT id, run_id, task_id, family, params, attempt, started, status, ended,
               duration, error_type, error_message, traceback, worker
        FROM fenced WHERE NOT changed
    ),
    upserted AS (
        INSERT INTO attempts (id, run_id, task_id, family, params, attempt, started, status,
                              ended, duration, error_type, error_message, traceback, worker)
        SELECT id, run_id, task_id, family, params, attempt, started, status, ended,
               duration, error_type, error_message, traceback, worker
        FROM fenced WHERE changed
        ON CONFLICT (id) DO UPDATE SET
            status = excluded.status, ended = excluded.ended, duration = excluded.duration,
            error_type = excluded.error_type, error_message = excluded.error_message,
            traceback = excluded.traceback, worker = excluded.worker
    )
    SELECT run_id, task_id, why FROM stale
"""
# WRITE_ATTEMPTS for a batch of new rows alone (the batches while runs go on), in one
# pass: no union of changed rows, no common table expression read thrice. The rows
# come by shape (rows.RunAttempts), each with only the columns it has: successes
# ($1..$8: id, task id, family, params, attempt, started, ended, token; the status
# and the duration are the statement's), running attempts ($9..$14), other endings
# ($15..$24, with a token for a success that gave its duration). Run ids come once
# per run ($25, $26: the run key of the attempt ids, the run id). Text columns that
# hold no NULL come as one string each, every value after the separator $27
# (postgres_store.joined(): the driver encodes a text array value by value, six
# times slower). The leases of the successes with a token are locked (FOR KEY
# SHARE) in task id order, and checked as in WRITE_ATTEMPTS; the refused ones
# come back.
WRITE_NEW: Final = """
    WITH inserted AS (
        INSERT INTO attempts (id, run_id, task_id, family, params, attempt, started, status,
                              ended, duration, error_type, error_message, traceback, worker)
        SELECT a.id, a.run_id, a.task_id, a.family, a.params, a.attempt, a.started,
               CASE WHEN w.why IS NULL THEN a.status ELSE 'failed' END, a.ended, a.duration,
               CASE WHEN w.why IS NULL THEN NULL ELSE 'asyncflow.LeaseLost' END,
               w.why, w.why, NULL
        FROM (
            SELECT b.*, k.run_id FROM (
                SELECT s.id, s.task_id, s.family, s.params, s.attempt, s.started,
                       'success' AS status, s.ended, greatest(s.ended - s.started, 0) AS duration,
                       s.token
                FROM unnest($1::bigint[],
                            (string_to_array($2, $27))[2:],
                            (string_to_array($3, $27))[2:],
                            (string_to_array($4, $27))[2:],
                            $5::integer[], $6::float8[], $7::float8[], $8::bigint[])
                     AS s (id, task_id, family, params, attempt, started, ended, token)
                UNION ALL
                SELECT r.id, r.task_id, r.family, r.params, r.attempt, r.started,
                       'running', NULL, NULL, NULL
                FROM unnest($9::bigint[],
                            (string_to_array($10, $27))[2:],
                            (string_to_array($11, $27))[2:],
                            (string_to_array($12, $27))[2:],
                            $13::integer[], $14::float8[])
                     AS r (id, task_id, family, params, attempt, started)
                UNION ALL
                SELECT * FROM unnest($15::bigint[],
                                     (string_to_array($16, $27))[2:],
                                     (string_to_array($17, $27))[2:],
                                     (string_to_array($18, $27))[2:],
                                     $19::integer[], $20::float8[],
                                     (string_to_array($21, $27))[2:],
                                     $22::float8[], $23::float8[], $24::bigint[])
                     AS e (id, task_id, family, params, attempt, started, status, ended,
                           duration, token)
            ) AS b
            LEFT JOIN unnest($25::bigint[], $26::text[]) AS k (key, run_id)
            ON k.key = b.id >> 32
            ORDER BY b.task_id
        ) AS a
        LEFT JOIN LATERAL (
            SELECT leases.run_id, leases.token FROM leases
            WHERE leases.task_id = a.task_id AND a.token IS NOT NULL
            FOR KEY SHARE
        ) AS l ON true
        CROSS JOIN LATERAL (
            SELECT CASE WHEN l.token > a.token THEN
                       format('%s: success not journaled: while this attempt ran (lease token '
                              '%s), its lease lapsed and was taken over by run %s (token %s); '
                              'that holder''s outcome stands',
                              a.task_id, a.token, l.run_id, l.token)
                   END AS why
        ) AS w
        RETURNING run_id, task_id, error_type, error_message
    )
    SELECT run_id, task_id, error_message FROM inserted WHERE error_type IS NOT NULL
"""
# The latest status of attempts that reported one (rows.Attempts.statuses: message,
# percentage, URL, attempt id), after the batch's rows are written.
SET_STATUS: Final = """
    UPDATE attempts AS a
    SET status_message = s.message, progress_percentage = s.percentage,
        tracking_url = s.url
    FROM unnest($1::text[], $2::float8[], $3::text[], $4::bigint[])
         AS s (message, percentage, url, id)
    WHERE a.id = s.id
"""

# The successes of a batch ($1 run ids, $2 task ids) that the fence refused: what
# the batch's statement returned, read back when its answer was lost (a batch
# sent again after its connection was lost, whose first sending had committed).
REFUSED: Final = """
    SELECT a.run_id, a.task_id, a.error_message
    FROM unnest($1::text[], $2::text[]) AS f (run_id, task_id),
    LATERAL (SELECT run_id, task_id, error_message FROM attempts
             WHERE attempts.task_id = f.task_id AND attempts.run_id = f.run_id
             AND attempts.error_type = 'asyncflow.LeaseLost' LIMIT 1) AS a
"""

# ---------------------------------------------------------------------- leases
# A lease is free when it was let go (outcome), when its holder's run journaled a
# success for the task, or when that run is over: ended, or expired by the
# database's clock (``runs.expires``, pushed on by its begin, its claims and its
# heartbeat). Liveness is expiry alone, whichever host the holder ran on. A take
# judging a holder's run expired locks that run's row (FOR SHARE), so a heartbeat
# pushing it on meanwhile either comes first (and the run is seen alive) or
# waits for the take to commit, and then sees that its run had lapsed (RENEW).
#
# The leases and attempts tables hold every task ever run, so the statements here
# look each task up by its key, in a subquery the planner keeps as written (a
# LATERAL one with LIMIT or FOR UPDATE; OFFSET 0 or FOR SHARE in an EXISTS):
# written as joins, or as EXISTS it may turn into one, they are planned as scans
# of every lease or attempt (once the tables have statistics), whose cost grows
# with the journal's history, or, on tables analyzed while empty, once per row.

# Take the free leases of many tasks in one statement (one transaction, one
# round trip), and push the taking run's liveness on. The task ids come as one
# string, each after the separator $6 (as in WRITE_NEW). Rows another transaction
# has locked are skipped, not waited for: the caller reads them as held, or
# claims them again. The take draws one fencing token for every lease it takes;
# the live holder re-taking its own keeps its token. That is also what a claim
# sent again after its connection was lost meets, when the first sending had
# committed (CLAIM_NEW then fails on its own rows, CLAIM_SOME inserts none): the
# leases it took come back once, under the tokens they were taken with; one that
# another run took meanwhile (after this run's liveness lapsed) is not its own.
CLAIM: Final = """
    WITH wanted AS (
        SELECT DISTINCT task_id FROM unnest((string_to_array($1, $6))[2:]) AS w (task_id)
    ),
    next AS (
        SELECT nextval('lease_tokens') AS token
    ),
    alive AS (
        UPDATE runs SET expires = greatest(expires, now() + make_interval(secs => $5))
        WHERE run_id = $2 AND status = 'running'
    ),
    fresh AS (
        INSERT INTO leases (task_id, run_id, host, pid, since, token)
        SELECT task_id, $2, $3, $4, now(), next.token
        FROM wanted, next ORDER BY task_id
        ON CONFLICT (task_id) DO NOTHING
        RETURNING task_id, token
    ),
    free AS (
        SELECT l.task_id,
               (l.run_id = $2 AND l.outcome IS NULL) AS mine,
               CASE WHEN l.run_id = $2 AND l.outcome IS NULL THEN l.prev_outcome
                    WHEN l.outcome IS NOT NULL THEN l.outcome
                    WHEN EXISTS (SELECT 1 FROM attempts AS a
                                 WHERE a.task_id = l.task_id AND a.status = 'success'
                                 AND a.run_id = l.run_id OFFSET 0)
                    THEN 'success'
                    ELSE 'abandoned' END AS prev
        FROM (SELECT task_id FROM wanted ORDER BY task_id) AS w,
        LATERAL (
            SELECT * FROM leases AS l
            WHERE l.task_id = w.task_id
            AND (l.outcome IS NOT NULL
                 OR l.run_id = $2
                 OR EXISTS (SELECT 1 FROM attempts AS a
                            WHERE a.task_id = l.task_id AND a.status = 'success'
                            AND a.run_id = l.run_id OFFSET 0)
                 OR EXISTS (SELECT 1 FROM runs AS r
                            WHERE r.run_id = l.run_id
                            AND (r.status != 'running' OR r.expires <= now())
                            FOR SHARE)
                 OR NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.run_id = l.run_id OFFSET 0))
            FOR UPDATE SKIP LOCKED
        ) AS l
    ),
    taken AS (
        UPDATE leases AS l SET
            run_id = $2, host = $3, pid = $4,
            since = CASE WHEN free.mine THEN l.since ELSE now() END,
            token = CASE WHEN free.mine THEN l.token ELSE (SELECT token FROM next) END,
            outcome = NULL, released = NULL,
            prev_outcome = free.prev
        FROM free WHERE l.task_id = free.task_id
        RETURNING l.task_id, l.token, free.prev
    )
    SELECT task_id, token, NULL::text AS prev FROM fresh
    UNION ALL
    SELECT task_id, token, prev FROM taken
"""
# The common case first: tasks never leased, taken with a plain insert (a third of
# CLAIM's cost), which looks nothing up: a task leased before, or by another claim
# meanwhile, makes it fail whole (unique_violation), and the caller then takes the
# lot with CLAIM_SOME and CLAIM. (A lookup of each id first is planned, once the
# leases table has statistics, as a scan of every lease ever taken: per claim when
# it is large, per row when it was empty.) The taking run's liveness is pushed on,
# as by CLAIM. One row comes back: the fencing token of every lease taken.
CLAIM_NEW: Final = """
    WITH next AS (
        SELECT nextval('lease_tokens') AS token
    ),
    alive AS (
        UPDATE runs SET expires = greatest(expires, now() + make_interval(secs => $5))
        WHERE run_id = $2 AND status = 'running'
    ),
    fresh AS (
        INSERT INTO leases (task_id, run_id, host, pid, since, token)
        SELECT w.task_id, $2, $3, $4, now(), next.token
        FROM unnest((string_to_array($1, $6))[2:]) AS w (task_id), next
    )
    SELECT token FROM next
"""
# When CLAIM_NEW failed: the tasks never leased inserted, the others skipped (an
# insert that meets a key looks nothing else up, whatever the statistics say),
# and the ids inserted come back with their token; CLAIM takes the others.
CLAIM_SOME: Final = """
    WITH next AS (
        SELECT nextval('lease_tokens') AS token
    ),
    alive AS (
        UPDATE runs SET expires = greatest(expires, now() + make_interval(secs => $5))
        WHERE run_id = $2 AND status = 'running'
    ),
    fresh AS (
        INSERT INTO leases (task_id, run_id, host, pid, since, token)
        SELECT w.task_id, $2, $3, $4, now(), next.token
        FROM unnest((string_to_array($1, $6))[2:]) AS w (task_id), next
        ON CONFLICT (task_id) DO NOTHING
        RETURNING task_id
    )
    SELECT (SELECT token FROM next), ARRAY(SELECT task_id FROM fresh)
"""
# How each lease stands, judged by the database: its holder (and until when its
# run lives), how it was let go, whether the holder's run journaled a success or
# ended, whether it expired. Each lease is looked up by its key (LIMIT 1: a
# subquery the planner keeps as it is, not a join it may plan as a scan of every
# lease ever taken).
LEASE_STATES: Final = """
    SELECT l.task_id, l.run_id, l.host, l.pid,
           extract(epoch FROM l.since)::float8,
           coalesce(extract(epoch FROM r.expires)::float8, 0),
           l.outcome,
           EXISTS (SELECT 1 FROM attempts AS a
                   WHERE a.task_id = l.task_id AND a.status = 'success'
                   AND a.run_id = l.run_id OFFSET 0),
           r.status IS DISTINCT FROM 'running',
           r.expires <= now()
    FROM unnest($1::text[]) AS w (task_id),
    LATERAL (SELECT * FROM leases WHERE leases.task_id = w.task_id LIMIT 1) AS l
    LEFT JOIN LATERAL (SELECT status, expires FROM runs WHERE runs.run_id = l.run_id LIMIT 1)
        AS r ON true
"""
# The heartbeat: this journal's runs pushed on, one row each, whatever the number
# of leases they hold. Each comes back with whether it had lapsed: its expiry
# passed before this statement got its row (clock_timestamp(): after waiting for
# any take that locked it). A run that lapsed may have lost leases (HELD tells
# which it keeps); one not renewed (not running any more, e.g. found interrupted
# by another process) lost them all.
RENEW: Final = """
    WITH mine AS (
        SELECT run_id, expires FROM runs
        WHERE status = 'running' AND run_id = ANY($1::text[])
        ORDER BY run_id FOR UPDATE
    )
    UPDATE runs SET expires = greatest(runs.expires, now() + make_interval(secs => $2))
    FROM mine WHERE runs.run_id = mine.run_id
    RETURNING runs.run_id, mine.expires <= clock_timestamp()
"""
# The leases a run still holds, of those it believes it holds ($1), with their tokens.
HELD: Final = """
    SELECT l.task_id, l.token FROM unnest($1::text[]) AS w (task_id),
    LATERAL (SELECT task_id, token FROM leases
             WHERE leases.task_id = w.task_id AND leases.run_id = $2
             AND leases.outcome IS NULL LIMIT 1) AS l
"""
# Letting go, under the token the lease was taken with (NULL: whatever it is):
# a holder whose lease was taken over meanwhile changes nothing. Sent again after
# a lost connection, when the first sending had committed, it finds the lease let
# go by the same run, under the same token, the same way: that is its own release
# (a take by another run changes the run id; a take again by this run draws a new
# token), and it is answered as the first would have been.
RELEASE: Final = """
    UPDATE leases SET outcome = $3,
        released = CASE WHEN outcome IS NULL THEN now() ELSE released END
    WHERE task_id = $1 AND run_id = $2
    AND (outcome IS NULL OR (outcome = $3 AND $4::bigint IS NOT NULL))
    AND ($4::bigint IS NULL OR token = $4)
    RETURNING 1
"""
# Successes another run may have committed after the caller probed: rival runs
# are those going on when the run began ($4) or begun after it (seq > $3).
ANY_RIVAL: Final = """
    SELECT 1 FROM runs WHERE run_id != $1
    AND (status = 'running' OR ended >= $2 OR seq > $3 OR run_id = ANY($4::text[]))
    LIMIT 1
"""
# Each task is looked up by its key, as in LEASE_STATES.
DONE_SINCE: Final = """
    SELECT w.task_id FROM unnest($1::text[]) AS w (task_id),
    LATERAL (SELECT 1 FROM attempts AS a
             WHERE a.task_id = w.task_id AND a.status = 'success' AND a.run_id != $2
             AND (a.ended >= $3
                  OR a.run_id IN (SELECT run_id FROM runs
                                  WHERE run_id != $2 AND (seq > $4 OR run_id = ANY($5::text[]))))
             LIMIT 1) AS a
"""
# Runs whose liveness expired (by the database's clock) are interrupted, with
# their running attempts (and those of runs that ended), in one statement (its
# subqueries see the runs as they were before it: those it interrupts are named
# apart); their leases are free from then on (the run is over).
RECOVER: Final = """
    WITH stale AS (
        UPDATE runs SET status = 'interrupted'
        WHERE status = 'running' AND expires <= now()
        RETURNING run_id
    ),
    left_running AS (
        UPDATE attempts SET status = 'interrupted'
        WHERE status = 'running'
        AND (run_id NOT IN (SELECT run_id FROM runs WHERE status = 'running')
             OR run_id IN (SELECT run_id FROM stale))
    )
    SELECT run_id FROM stale
"""

# --------------------------------------------------------------------- reading

# Each task is looked up by its key (attempts_task), as in LEASE_STATES: the probe
# of every run, whatever the number of attempts journaled before.
SUCCEEDED: Final = """
    SELECT w.task_id, a.status FROM unnest($1::text[]) AS w (task_id),
    LATERAL (SELECT DISTINCT status FROM attempts
             WHERE attempts.task_id = w.task_id
             AND (status = 'success'
                  OR status NOT IN ('running', 'success', 'failed', 'timeout', 'cancelled',
                                    'interrupted', 'missing'))) AS a
"""
# The same for the task ids in [$1, $2) (those sharing a prefix: one range of the
# byte-ordered index), at most $3 of them.
SUCCEEDED_UNDER: Final = """
    SELECT DISTINCT task_id, status FROM attempts
    WHERE task_id >= $1 AND task_id < $2
    AND (status = 'success'
         OR status NOT IN ('running', 'success', 'failed', 'timeout', 'cancelled',
                           'interrupted', 'missing'))
    LIMIT $3
"""
# Whether PRIOR_ATTEMPTS can find anything: a tiny statement that spares it (and
# its array of every task id claimed) while no run was ever interrupted.
ANY_INTERRUPTED: Final = "SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'interrupted')"
# Failed attempts in runs interrupted after the task's last success and its last
# run that ended: what a resumed run has used of the task's retries.
PRIOR_ATTEMPTS: Final = """
    SELECT a.task_id, count(*)
    FROM attempts AS a JOIN runs AS r ON r.run_id = a.run_id
    WHERE a.task_id = ANY($1::text[])
      AND r.status = 'interrupted' AND a.attempt > 0 AND a.status IN ('failed', 'timeout')
      AND coalesce(a.started, a.ended) > coalesce((
          SELECT max(coalesce(b.started, b.ended))
          FROM attempts AS b JOIN runs AS s ON s.run_id = b.run_id
          WHERE b.task_id = a.task_id
            AND (b.status = 'success' OR s.status NOT IN ('interrupted', 'running'))
      ), '-Infinity'::float8)
    GROUP BY a.task_id
"""


# Runs with their first requested ids (a JSON array, $first of them) and how many
# there are: a list of runs that requested 100,000 tasks each does not decode them all.
def _listed(first: str) -> str:
    """Runs with the first ``first`` (a parameter) requested ids, and their count."""
    return f"""
    SELECT r.run_id, r.status, r.started, r.ended, r.host, r.pid, r.version,
           (SELECT coalesce(json_agg(e.value ORDER BY e.n), '[]')::text
            FROM json_array_elements_text(q.requested::json) WITH ORDINALITY AS e(value, n)
            WHERE e.n <= {first}),
           json_array_length(q.requested::json)
    FROM runs AS r LEFT JOIN run_requests AS q USING (run_id)
"""


RUNS: Final = f"""
    {_listed("$2")}
    ORDER BY r.started DESC, r.seq DESC LIMIT $1
"""
RUN: Final = """
    SELECT r.run_id, r.status, r.started, r.ended, r.host, r.pid, r.version, q.requested
    FROM runs AS r LEFT JOIN run_requests AS q USING (run_id)
    WHERE r.run_id = $1
"""
RUN_COUNTS: Final = """
    SELECT run_id, status, count(*) FROM attempts
    WHERE run_id = ANY($1::text[]) GROUP BY run_id, status
"""
RUN_ATTEMPTS: Final = """
    SELECT a.run_id, a.task_id, a.family, a.params, a.attempt, a.status, a.started, a.ended,
           a.duration, a.error_type, a.error_message, a.traceback, r.host, r.pid, a.worker,
           a.status_message, a.progress_percentage, a.tracking_url
    FROM attempts AS a LEFT JOIN runs AS r USING (run_id)
    WHERE a.run_id = $1 ORDER BY a.id
"""
TASK_ATTEMPTS: Final = """
    SELECT a.run_id, a.task_id, a.family, a.params, a.attempt, a.status, a.started, a.ended,
           a.duration, a.error_type, a.error_message, a.traceback, r.host, r.pid, a.worker,
           a.status_message, a.progress_percentage, a.tracking_url
    FROM attempts AS a LEFT JOIN runs AS r USING (run_id)
    WHERE a.task_id = $1 ORDER BY coalesce(a.started, a.ended), a.id
"""
FIND_RUNS: Final = f"""
    {_listed("$4")}
    WHERE ($1::text IS NULL OR r.status = $1)
    ORDER BY r.started DESC, r.seq DESC LIMIT $2 OFFSET $3
"""
FIND_RUNS_OF_FAMILY: Final = f"""
    {_listed("$5")}
    WHERE ($1::text IS NULL OR r.status = $1)
    AND r.run_id IN (SELECT DISTINCT run_id FROM attempts WHERE family = $4)
    ORDER BY r.started DESC, r.seq DESC LIMIT $2 OFFSET $3
"""
COUNT_RUNS: Final = "SELECT status, count(*) FROM runs GROUP BY status"
COUNT_RUNS_OF_FAMILY: Final = """
    SELECT status, count(*) FROM runs
    WHERE run_id IN (SELECT DISTINCT run_id FROM attempts WHERE family = $1)
    GROUP BY status
"""
# Task ids starting with $1 (one range of the byte-ordered index), then those
# containing it in any case; each with its attempt count and latest attempt.
TASKS_STARTING: Final = """
    SELECT task_id, count(*), max(id) FROM attempts
    WHERE starts_with(task_id, $1)
    GROUP BY task_id ORDER BY task_id LIMIT $2
"""
TASKS_CONTAINING: Final = r"""
    SELECT task_id, count(*), max(id) FROM attempts
    WHERE task_id ILIKE $1 ESCAPE '\' AND NOT starts_with(task_id, $2)
    GROUP BY task_id ORDER BY task_id LIMIT $3
"""
ATTEMPTS_BY_ID: Final = """
    SELECT a.run_id, a.task_id, a.family, a.params, a.attempt, a.status, a.started, a.ended,
           a.duration, a.error_type, a.error_message, a.traceback, r.host, r.pid, a.worker,
           a.status_message, a.progress_percentage, a.tracking_url
    FROM attempts AS a LEFT JOIN runs AS r USING (run_id)
    WHERE a.id = ANY($1::bigint[])
"""

# ------------------------------------------------------- a run, a page at a time
#
# Counted by aggregates, paged with LIMIT and OFFSET in a stable order (a task by
# its first attempt, an attempt by its id): a page decodes the rows it shows.

RUN_SUMMARY: Final = f"""
    {_listed("$2")}
    WHERE r.run_id = $1
"""
# The attempts of a run key k: the ids k << 32 .. k << 32 | 0xFFFFFFFF (see rows.py).
_KEY_RANGE: Final = "a.id BETWEEN k.key << 32 AND (k.key << 32) + 4294967295"
# The attempts of run $1: the id range of each of its keys.
_OF_RUN: Final = f"run_keys AS k JOIN attempts AS a ON {_KEY_RANGE} WHERE k.run_id = $1"
# Each task of the run: its first and latest attempt, and how many started.
_TASKS: Final = f"""
    SELECT a.task_id, min(a.family) AS family, min(a.id) AS first, max(a.id) AS last,
           count(*) FILTER (WHERE a.attempt > 0) AS ran
    FROM {_OF_RUN} GROUP BY a.task_id
"""
SUMMARY_COUNTS: Final = f"SELECT a.status, count(*) FROM {_OF_RUN} GROUP BY a.status"
# A task of run $1 with an attempt of status $2 (to name one whose status is damaged).
WITH_STATUS: Final = f"SELECT a.task_id FROM {_OF_RUN} AND a.status = $2 LIMIT 1"
TASK_COUNTS: Final = f"""
    SELECT l.status, count(*) FROM ({_TASKS}) AS t JOIN attempts AS l ON l.id = t.last
    GROUP BY l.status
"""
FAMILY_COUNTS: Final = f"""
    SELECT t.family, count(*) FROM ({_TASKS}) AS t GROUP BY t.family ORDER BY min(t.first)
"""
# Requested ids of run $1 in the order requested; with $2, those without an attempt in it.
_REQUESTED_IDS: Final = """
    FROM run_requests AS q
    CROSS JOIN LATERAL json_array_elements_text(q.requested::json) WITH ORDINALITY AS j(task_id, n)
    WHERE q.run_id = $1 AND (NOT $2 OR NOT EXISTS (
        SELECT 1 FROM attempts AS a WHERE a.task_id = j.task_id AND a.run_id = $1))
"""
REQUESTED: Final = f"SELECT j.task_id {_REQUESTED_IDS} ORDER BY j.n LIMIT $3 OFFSET $4"
COUNT_REQUESTED: Final = f"SELECT count(*) {_REQUESTED_IDS}"
_ATTEMPT_COLUMNS: Final = """
    a.run_id, a.task_id, a.family, a.params, a.attempt, a.status, a.started, a.ended,
    a.duration, a.error_type, a.error_message, a.traceback, r.host, r.pid, a.worker,
    a.status_message, a.progress_percentage, a.tracking_url
"""
# The attempts of a page of run $1's tasks ($2: the latest status wanted, or NULL).
RUN_TASK_PAGE: Final = f"""
    WITH page AS (
        SELECT t.task_id, t.first, t.last FROM ({_TASKS}) AS t JOIN attempts AS l ON l.id = t.last
        WHERE $2::text IS NULL OR l.status = $2
        ORDER BY t.first LIMIT $3 OFFSET $4
    )
    SELECT {_ATTEMPT_COLUMNS} FROM page AS p
    JOIN attempts AS a ON a.task_id = p.task_id AND a.id BETWEEN p.first AND p.last
    LEFT JOIN runs AS r ON r.run_id = a.run_id
    WHERE a.run_id = $1 ORDER BY p.first, a.id
"""
# A page of run $1's attempts in order ($2: the statuses wanted, or NULL; $3 NULL: all).
RUN_ATTEMPT_PAGE: Final = f"""
    SELECT {_ATTEMPT_COLUMNS}
    FROM run_keys AS k JOIN attempts AS a ON {_KEY_RANGE}
    LEFT JOIN runs AS r ON r.run_id = k.run_id
    WHERE k.run_id = $1 AND ($2::text[] IS NULL OR a.status = ANY($2::text[]))
    ORDER BY a.id LIMIT $3 OFFSET $4
"""
# The first tasks of each family of run $1 ($2 the families, $3 how many of each).
TASK_STATES: Final = f"""
    WITH placed AS (
        SELECT t.*, row_number() OVER (PARTITION BY t.family ORDER BY t.first) AS place
        FROM ({_TASKS}) AS t
    )
    SELECT p.task_id, p.family, l.status, p.ran FROM placed AS p
    JOIN unnest($2::text[], $3::bigint[]) AS c(family, cap)
        ON c.family = p.family AND p.place <= c.cap
    JOIN attempts AS l ON l.id = p.last
    ORDER BY p.first
"""

# --------------------------------------------------------------------- pruning
# (see asyncflow.journal.prune for what a prune keeps; these are its twins)

_OURS: Final = ", ".join(repr(status.value) for status in AttemptStatus)

# Runs not running that ended (interrupted ones: stopped renewing) before $1, and
# are not among the $2 latest begun; with their status (one none of ours is damage).
PRUNE_RUNS: Final = """
    SELECT run_id, status FROM runs
    WHERE status <> 'running'
      AND coalesce(ended, extract(epoch FROM expires)::double precision) < $1::double precision
      AND run_id NOT IN (SELECT run_id FROM runs ORDER BY started DESC, seq DESC LIMIT $2)
"""
PRUNE_KEYS: Final = "SELECT key, run_id FROM run_keys WHERE run_id = ANY ($1::text[])"
# Each task with a success among the attempts of keys $1: its latest success.
PRUNE_KEPT: Final = f"""
    SELECT l.id FROM (SELECT DISTINCT a.task_id FROM unnest($1::bigint[]) AS k (key)
                      JOIN attempts AS a ON {_KEY_RANGE} WHERE a.status = 'success') AS t,
    LATERAL (SELECT b.id FROM attempts AS b WHERE b.task_id = t.task_id
             AND b.status = 'success' ORDER BY b.ended DESC, b.id DESC LIMIT 1) AS l
"""
# The attempts of keys $1 but those kept ($2), counted, with the first whose status
# is none of ours (and that status).
PRUNE_COUNT: Final = f"""
    SELECT count(*), min(a.id) FILTER (WHERE a.status NOT IN ({_OURS})),
           min(a.status) FILTER (WHERE a.status NOT IN ({_OURS}))
    FROM unnest($1::bigint[]) AS k (key) JOIN attempts AS a ON {_KEY_RANGE}
    WHERE a.id NOT IN (SELECT unnest($2::bigint[]))
"""
PRUNE_ATTEMPTS: Final = f"""
    DELETE FROM attempts AS a USING unnest($1::bigint[]) AS k (key)
    WHERE {_KEY_RANGE} AND a.id NOT IN (SELECT unnest($2::bigint[]))
"""
PRUNE_RUN_ROWS: Final = "DELETE FROM runs WHERE run_id = ANY ($1::text[])"
PRUNE_REQUESTS: Final = "DELETE FROM run_requests WHERE run_id = ANY ($1::text[])"
PRUNE_RUN_KEYS: Final = "DELETE FROM run_keys WHERE run_id = ANY ($1::text[])"
PRUNE_COUNT_LEASES: Final = "SELECT count(*) FROM leases WHERE run_id = ANY ($1::text[])"
PRUNE_LEASES: Final = (
    "WITH gone AS (DELETE FROM leases WHERE run_id = ANY ($1::text[]) RETURNING 1) "
    "SELECT count(*) FROM gone"
)

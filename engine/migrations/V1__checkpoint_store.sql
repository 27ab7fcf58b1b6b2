-- Tandem's PostgreSQL checkpoint store, schema version 1.
-- Applied by refinery at connect (see engine/src/store/postgres/migrate.rs); never edit an
-- applied migration: add V2__*.sql instead.

-- The head of the log: the last position handed out. Appends take this row's lock as late as
-- possible and hold it until they commit, so positions are assigned in commit order.
CREATE TABLE log_head (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    last bigint NOT NULL CHECK (last >= 0)
);
INSERT INTO log_head (id, last) VALUES (true, 0);

-- The store-wide epoch counter: every create and claim takes the next value.
CREATE SEQUENCE epochs AS bigint START WITH 1 MINVALUE 1 NO CYCLE;

-- One row per run: a projection of the log for listing, plus its owner (fencing).
CREATE TABLE runs (
    run_id uuid PRIMARY KEY,
    workflow text NOT NULL,
    version text NOT NULL,
    status text NOT NULL
        CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'timed_out')),
    created_at bigint NOT NULL,
    created_position bigint NOT NULL UNIQUE,
    finished_at bigint,
    owner_epoch bigint NOT NULL CHECK (owner_epoch > 0),
    owner_host text NOT NULL,
    owner_pid bigint NOT NULL,
    owner_start_ticks bigint NOT NULL
);
CREATE INDEX runs_by_workflow ON runs (workflow, run_id);
CREATE INDEX runs_by_status ON runs (status, run_id);

-- The log. `payload` is the event as serde's JSON text (type json keeps the text as written,
-- including \u0000 escapes, which jsonb refuses). No foreign key to runs: every append checks
-- (and locks) its runs in the same transaction, and runs are never deleted.
CREATE TABLE checkpoints (
    position bigint PRIMARY KEY,
    epoch bigint NOT NULL,
    run_id uuid NOT NULL,
    recorded_at bigint NOT NULL,
    kind text NOT NULL,
    payload json NOT NULL
);
CREATE INDEX checkpoints_by_run ON checkpoints (run_id, position);

-- One row per committed write (append or create), keyed by the id the writer chose, so a
-- write retried after its commit outcome was lost with the connection is not applied twice.
CREATE TABLE batches (
    batch_id uuid PRIMARY KEY,
    last_position bigint NOT NULL,
    epoch bigint NOT NULL
);

-- The workflows registered with the region; `registration` orders them.
CREATE TABLE workflows (
    registration bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    name text NOT NULL,
    version text NOT NULL,
    source text NOT NULL,
    file_name text NOT NULL,
    registered_at bigint NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX workflows_latest ON workflows (name, registration);

-- The run each idempotency key created (create_run_once).
CREATE TABLE idempotency_keys (
    idempotency_key text PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED
);

-- Tandem's PostgreSQL checkpoint store, schema version 2: region fencing and cron schedules.
-- Applied by refinery at connect (see engine/src/store/postgres/migrate.rs); never edit an
-- applied migration: add V3__*.sql instead.

-- The highest leader epoch this store has seen (0: none). Every write of a fenced handle
-- raises it in its transaction, with `UPDATE log_head ... WHERE leader_epoch <= epoch`, so
-- the check and the raise are serialized by this row's lock with every other write.
ALTER TABLE log_head
    ADD COLUMN leader_epoch bigint NOT NULL DEFAULT 0 CHECK (leader_epoch >= 0);

-- The run each tick of a workflow's cron schedule started (create_scheduled_run): at most
-- one per (workflow, tick). `tick` is the tick's time in ms since the Unix epoch.
CREATE TABLE schedule_ticks (
    workflow text NOT NULL,
    tick bigint NOT NULL,
    run_id uuid NOT NULL REFERENCES runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (workflow, tick)
);

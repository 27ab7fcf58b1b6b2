-- Tandem's PostgreSQL checkpoint store, schema version 3: cross-region replication.
-- Applied by refinery at connect (see engine/src/store/postgres/migrate.rs); never edit an
-- applied migration: add V4__*.sql instead. The rules are in engine/src/store/replication.rs
-- and engine/src/store/postgres/replication.rs.

-- The region's role and region epoch live in the head's row, beside the leader fence, so
-- that the `UPDATE log_head ... WHERE leader_epoch <= $e AND region_role = 'active'` of
-- every fenced write checks both under the row lock every write and every role change
-- takes (a demotion that committed is seen by a write that was waiting for the lock).
ALTER TABLE log_head
    ADD COLUMN region_role text NOT NULL DEFAULT 'active'
        CHECK (region_role IN ('active', 'standby', 'fenced')),
    ADD COLUMN region_epoch bigint NOT NULL DEFAULT 0 CHECK (region_epoch >= 0);

-- When a standby applied each replicated checkpoint (ms since the Unix epoch; NULL for the
-- checkpoints this region wrote itself): `replicated_at - recorded_at` is the checkpoint's
-- replication lag, which `tandem bench -w dr-lag` reads.
ALTER TABLE checkpoints ADD COLUMN replicated_at bigint;

-- The rest of the region's state, one row, changed only by transactions that hold the
-- head's row lock (init_region, apply_replicated, promote, demote, rejoin).
CREATE TABLE region_state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- This store's region; '' until init_region names it.
    region text NOT NULL,
    -- The region it knows as active (its own name when active; '' until named).
    active_region text NOT NULL,
    -- The last position applied from the active region (equal to log_head.last while
    -- standby).
    applied_position bigint NOT NULL CHECK (applied_position >= 0),
    -- The source's `registration` number of the last workflow applied (a cursor into the
    -- active region's numbering; 0 after a change of active region, so all are asked again).
    applied_registration bigint NOT NULL CHECK (applied_registration >= 0),
    -- When the last batch was applied, and the source's commit time of its last checkpoint
    -- (ms since the Unix epoch).
    applied_at bigint,
    applied_recorded_at bigint,
    -- The source's latest position as the last applied batch reported it.
    source_latest_position bigint NOT NULL CHECK (source_latest_position >= 0),
    -- log_head.last when this region was last promoted (NULL: never).
    promoted_at_position bigint CHECK (promoted_at_position >= 0),
    -- Fenced: the unreplicated tail [tail_from, tail_to]; NULL otherwise.
    tail_from bigint,
    tail_to bigint,
    CHECK ((tail_from IS NULL) = (tail_to IS NULL)),
    CHECK (tail_from IS NULL OR (tail_from >= 1 AND tail_from <= tail_to))
);
INSERT INTO region_state (id, region, active_region, applied_position, applied_registration,
    source_latest_position)
VALUES (true, '', '', 0, 0, 0);

-- The unreplicated tails that rejoins cut from the log: each checkpoint as it was (the
-- columns of table checkpoints), when it was archived, and the fork it lost to. Kept, never
-- deleted. A region is fenced at most once per region epoch, so (region_epoch, position)
-- names an archived checkpoint.
CREATE TABLE dr_tail (
    -- The region epoch of the region that superseded this one (this store's epoch at the
    -- rejoin).
    region_epoch bigint NOT NULL,
    position bigint NOT NULL,
    epoch bigint NOT NULL,
    run_id uuid NOT NULL,
    recorded_at bigint NOT NULL,
    kind text NOT NULL,
    payload json NOT NULL,
    -- When the rejoin archived it (ms since the Unix epoch).
    archived_at bigint NOT NULL,
    -- The position the log was cut back to (the active region's promoted_at_position).
    fork_position bigint NOT NULL,
    -- The region that was active then.
    active_region text NOT NULL,
    PRIMARY KEY (region_epoch, position)
);
CREATE INDEX dr_tail_by_run ON dr_tail (run_id, position);

-- Replication ships each run_created checkpoint with its idempotency key or schedule tick,
-- and a rejoin deletes those of the runs it cuts: both look them up by run.
CREATE INDEX idempotency_keys_by_run ON idempotency_keys (run_id);
CREATE INDEX schedule_ticks_by_run ON schedule_ticks (run_id);

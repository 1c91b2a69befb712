-- rm-postgres schema, version 1: the tables. (The functions are in functions.sql, replaced
-- as a whole whenever they change.) `@schema` is replaced by the quoted schema name.
--
-- Amounts are thousandths of a capacity's unit (as `Quantity::as_milli`); instants are
-- nanoseconds.

CREATE TABLE @schema.meta (
    key text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO @schema.meta VALUES ('catalog', 0);

CREATE SEQUENCE @schema.resource_position;
CREATE SEQUENCE @schema.fencing;
CREATE SEQUENCE @schema.event_sequence;

CREATE TABLE @schema.resource (
    name text PRIMARY KEY,
    position bigint NOT NULL UNIQUE DEFAULT nextval('@schema.resource_position'),
    generation bigint NOT NULL DEFAULT 1,
    spec text NOT NULL
);

CREATE TABLE @schema.capacity (
    resource text NOT NULL REFERENCES @schema.resource (name) ON DELETE CASCADE,
    resource_type text NOT NULL,
    position bigint NOT NULL,
    generation bigint NOT NULL,
    unit text NOT NULL,
    maximum bigint NOT NULL,
    external bigint NOT NULL,
    -- Held by active reservations, pending or confirmed (the split is theirs: confirming
    -- a hold changes its reservation's row only).
    held bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (resource, resource_type),
    CHECK (held >= 0 AND external >= 0 AND maximum >= 0)
);

-- The backends listening for events (Listener registers its own): with none, nothing is
-- published, and transactions skip NOTIFY's database-wide lock at commit.
CREATE TABLE @schema.listener (
    pid integer PRIMARY KEY,
    since timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE @schema.reservation (
    id text PRIMARY KEY,
    request_key text NOT NULL,
    requester text NOT NULL,
    priority integer NOT NULL,
    state text NOT NULL,
    fencing bigint NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    expires_at bigint,
    ended_at bigint,
    labels text NOT NULL,
    preemptible boolean NOT NULL,
    items text NOT NULL,
    hold_resource text[] NOT NULL,
    hold_type text[] NOT NULL,
    hold_amount bigint[] NOT NULL,
    CHECK (state IN ('pending', 'confirmed', 'released', 'expired', 'preempted', 'cancelled'))
);
-- The sweep finds due pending holds, retention finds ended ones. (Snapshots read the whole
-- table, which retention keeps to the active holds and the recently ended: one index fewer
-- to maintain on every grant.)
CREATE INDEX reservation_expiry ON @schema.reservation (expires_at) WHERE state = 'pending';
CREATE INDEX reservation_ended ON @schema.reservation (ended_at) WHERE ended_at IS NOT NULL;

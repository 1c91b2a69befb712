-- rm-postgres schema, version 3: the shared wait queue. A waiter in any process has a row,
-- ordered by priority (highest first), then by arrival; only the head may take capacity, so
-- the order is the same in every process. A waiter's row is a lease it renews while it waits:
-- one whose process died stops renewing and is skipped, then swept.

CREATE SEQUENCE @schema.waiter_id;

CREATE TABLE @schema.waiter (
    id bigint PRIMARY KEY DEFAULT nextval('@schema.waiter_id'),
    reservation text NOT NULL UNIQUE,
    requester text NOT NULL,
    priority integer NOT NULL,
    enqueued_at bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX waiter_order ON @schema.waiter (priority DESC, id);

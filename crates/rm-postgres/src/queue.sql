-- rm-postgres schema, version 4: the shared queue's order and backfill.
--
-- Order: by a key each waiter's process computes with its allocation policy (lower first; by
-- default minus the priority, which is the order of version 3), refreshed with the waiter's
-- lease, then by arrival.
--
-- Backfill: a waiter that says how long it will hold (`estimate`, nanoseconds) may take
-- capacity ahead of a blocked head when it cannot delay it; the head's needs per type
-- (thousandths of each dimension's smallest unit) are kept with its row, and a hold granted
-- to a waiter with an estimate keeps its expected end.

ALTER TABLE @schema.waiter
    ADD COLUMN order_key bigint,
    ADD COLUMN estimate bigint,
    ADD COLUMN need_types text[] NOT NULL DEFAULT '{}',
    ADD COLUMN need_amounts bigint[] NOT NULL DEFAULT '{}';
UPDATE @schema.waiter SET order_key = -priority;
ALTER TABLE @schema.waiter ALTER COLUMN order_key SET NOT NULL;
DROP INDEX @schema.waiter_order;
CREATE INDEX waiter_order ON @schema.waiter (order_key, id);

ALTER TABLE @schema.reservation ADD COLUMN expected_end bigint;

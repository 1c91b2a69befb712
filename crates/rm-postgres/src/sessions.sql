-- rm-postgres schema, version 2: worker sessions. A process opens a session (a lease on the
-- server's clock, renewed by its heartbeat) and binds holds to it; when the session ends
-- (closed, or not renewed within its TTL) its pending holds expire and its confirmed holds are
-- released, unless a hold asked to be kept (then it outlives the session, unbound).
--
-- Lock order, extending version 1's: a session row before the reservation rows bound to it,
-- before capacity rows.

CREATE SEQUENCE @schema.session_id;

CREATE TABLE @schema.session (
    id bigint PRIMARY KEY DEFAULT nextval('@schema.session_id'),
    name text NOT NULL,
    ttl bigint NOT NULL,
    started_at bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX session_expiry ON @schema.session (expires_at);

ALTER TABLE @schema.reservation
    ADD COLUMN session bigint,
    ADD COLUMN keep_confirmed boolean NOT NULL DEFAULT false;
CREATE INDEX reservation_session ON @schema.reservation (session) WHERE session IS NOT NULL;

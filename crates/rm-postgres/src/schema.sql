-- rm-postgres schema, version 1. `@schema` is replaced by the quoted schema name and
-- `@channel` by the NOTIFY channel's name as a string literal.
--
-- Amounts are thousandths of a capacity's unit (as `Quantity::as_milli`); instants are
-- nanoseconds, by the database server's clock (`now_ns`) unless a client passes its own
-- (tests with a manual clock). Locks are always taken in one order: reservation rows (in id
-- order) before capacity rows (in registration position, then type order); catalog changes
-- lock the `meta` row first.

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
    pending bigint NOT NULL DEFAULT 0,
    confirmed bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (resource, resource_type),
    CHECK (pending >= 0 AND confirmed >= 0 AND external >= 0 AND maximum >= 0)
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
-- The sweep finds due pending holds, retention finds ended ones, snapshots the active ones.
CREATE INDEX reservation_expiry ON @schema.reservation (expires_at) WHERE state = 'pending';
CREATE INDEX reservation_ended ON @schema.reservation (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX reservation_active ON @schema.reservation (fencing)
    WHERE state IN ('pending', 'confirmed');

-- The server's clock in nanoseconds since the Unix epoch.
CREATE FUNCTION @schema.now_ns() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint
$$;

-- Publishes an event to listeners in any process (on commit). A payload over NOTIFY's
-- limit goes without its items, marked truncated.
CREATE FUNCTION @schema.notify(p_kind jsonb, p_at bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_sequence bigint := nextval('@schema.event_sequence');
    v_payload text;
BEGIN
    v_payload := jsonb_build_object('sequence', v_sequence, 'at', p_at, 'kind', p_kind)::text;
    IF octet_length(v_payload) > 7900 THEN
        v_payload := jsonb_build_object('sequence', v_sequence, 'at', p_at, 'truncated', true,
            'kind', p_kind || '{"items": []}'::jsonb)::text;
    END IF;
    PERFORM pg_notify(@channel, v_payload);
END
$$;

-- Moves the holds' amounts between the counters: `p_from` loses them and `p_to` gains them
-- ('pending', 'confirmed', or NULL for none). Locks the capacity rows in the global order
-- first, so that two transactions never wait for each other's rows.
CREATE FUNCTION @schema.move_holds(p_res text[], p_type text[], p_amount bigint[],
        p_from text, p_to text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM @schema.capacity c
        JOIN unnest(p_res, p_type) AS h(res, typ) ON c.resource = h.res AND c.resource_type = h.typ
        ORDER BY c.position, c.resource_type
        FOR UPDATE OF c;
    UPDATE @schema.capacity c SET
        pending = c.pending
            - CASE WHEN p_from = 'pending' THEN h.amount ELSE 0 END
            + CASE WHEN p_to = 'pending' THEN h.amount ELSE 0 END,
        confirmed = c.confirmed
            - CASE WHEN p_from = 'confirmed' THEN h.amount ELSE 0 END
            + CASE WHEN p_to = 'confirmed' THEN h.amount ELSE 0 END
    FROM unnest(p_res, p_type, p_amount) AS h(res, typ, amount)
    WHERE c.resource = h.res AND c.resource_type = h.typ;
END
$$;

-- Ends an active reservation (locked by the caller) as `p_to`, crediting its holds.
CREATE FUNCTION @schema.end_hold(r @schema.reservation, p_to text, p_by text, p_now bigint)
        RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM @schema.move_holds(r.hold_resource, r.hold_type, r.hold_amount, r.state, NULL);
    UPDATE @schema.reservation SET state = p_to, updated_at = p_now, expires_at = NULL,
        ended_at = p_now
    WHERE id = r.id;
    PERFORM @schema.notify(jsonb_build_object('event', 'ended', 'reservation', r.id,
        'requester', r.requester, 'reason', p_to, 'items', r.items::jsonb,
        'preempted_by', p_by), p_now);
END
$$;

-- Grants a planned request: every hold's capacity row must still have the generation the
-- client planned with and room for the amount, checked with the rows locked, or nothing
-- changes ('stale'). An id already used answers 'existing' with whether the request matches.
CREATE FUNCTION @schema.reserve(p_id text, p_key text, p_requester text, p_priority integer,
        p_labels text, p_preemptible boolean, p_items text,
        p_res text[], p_type text[], p_amount bigint[], p_gen bigint[],
        p_now bigint, p_ttl bigint)
    RETURNS TABLE (outcome text, at bigint, fencing bigint, expires_at bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint := coalesce(p_now, @schema.now_ns());
    v_key text;
    v_ok integer;
    v_token bigint;
BEGIN
    SELECT r.request_key INTO v_key FROM @schema.reservation r WHERE r.id = p_id;
    IF FOUND THEN
        RETURN QUERY SELECT CASE WHEN v_key = p_key THEN 'existing' ELSE 'conflict' END,
            v_now, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF cardinality(p_res) = 0 THEN
        -- A lookup of the id only (the client found nothing to plan).
        RETURN QUERY SELECT 'absent'::text, v_now, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    PERFORM 1 FROM @schema.capacity c
        JOIN unnest(p_res, p_type) AS h(res, typ) ON c.resource = h.res AND c.resource_type = h.typ
        ORDER BY c.position, c.resource_type
        FOR UPDATE OF c;
    SELECT count(*) INTO v_ok FROM @schema.capacity c
        JOIN unnest(p_res, p_type, p_amount, p_gen) AS h(res, typ, amount, gen)
            ON c.resource = h.res AND c.resource_type = h.typ
        WHERE c.generation = h.gen
            AND c.maximum - c.external - c.pending - c.confirmed >= h.amount;
    IF v_ok <> cardinality(p_res) THEN
        RETURN QUERY SELECT 'stale'::text, v_now, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    v_token := nextval('@schema.fencing');
    INSERT INTO @schema.reservation (id, request_key, requester, priority, state, fencing,
        created_at, updated_at, expires_at, labels, preemptible, items,
        hold_resource, hold_type, hold_amount)
    VALUES (p_id, p_key, p_requester, p_priority, 'pending', v_token, v_now, v_now,
        v_now + p_ttl, p_labels, p_preemptible, p_items, p_res, p_type, p_amount)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        -- Another connection granted this id meanwhile: answer as a retry.
        SELECT r.request_key INTO v_key FROM @schema.reservation r WHERE r.id = p_id;
        RETURN QUERY SELECT CASE WHEN v_key = p_key THEN 'existing' ELSE 'conflict' END,
            v_now, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    UPDATE @schema.capacity c SET pending = c.pending + h.amount
    FROM unnest(p_res, p_type, p_amount) AS h(res, typ, amount)
    WHERE c.resource = h.res AND c.resource_type = h.typ;
    PERFORM @schema.notify(jsonb_build_object('event', 'reserved', 'reservation', p_id,
        'requester', p_requester, 'priority', p_priority, 'items', p_items::jsonb,
        'fencing_token', v_token), v_now);
    RETURN QUERY SELECT 'granted'::text, v_now, v_token, v_now + p_ttl;
END
$$;

-- One operation on one reservation: 'get', 'lock' (get, keeping the row locked for the
-- caller's transaction), 'confirm', 'renew', 'release', 'cancel', 'preempt'. A pending hold
-- past its deadline expires first. Outcomes: 'changed', 'same' (nothing to do, or a get),
-- 'unknown', 'stale-fence', 'wrong-state'. The row is the reservation as it is afterwards;
-- `expired_now` says this call expired it.
CREATE FUNCTION @schema.act(p_id text, p_fence bigint, p_now bigint, p_op text,
        p_ttl bigint, p_by text)
    RETURNS TABLE (outcome text, expired_now boolean, at bigint, id text, state text,
        fencing bigint,
        requester text, priority integer, created_at bigint, updated_at bigint,
        expires_at bigint, labels text, preemptible boolean, items text,
        hold_resource text[], hold_type text[], hold_amount bigint[])
    LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint := coalesce(p_now, @schema.now_ns());
    r @schema.reservation;
    v_expired boolean := false;
    v_outcome text := 'same';
    v_target text;
BEGIN
    IF p_op = 'get' THEN
        SELECT * INTO r FROM @schema.reservation x WHERE x.id = p_id;
        IF FOUND AND r.state = 'pending' AND r.expires_at <= v_now THEN
            SELECT * INTO r FROM @schema.reservation x WHERE x.id = p_id FOR UPDATE;
        END IF;
    ELSE
        SELECT * INTO r FROM @schema.reservation x WHERE x.id = p_id FOR UPDATE;
    END IF;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, false, v_now, p_id, NULL::text, NULL::bigint,
            NULL::text, NULL::integer, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text,
            NULL::boolean, NULL::text, NULL::text[], NULL::text[], NULL::bigint[];
        RETURN;
    END IF;
    IF p_fence IS NOT NULL AND p_fence <> r.fencing THEN
        v_outcome := 'stale-fence';
    ELSE
        IF r.state = 'pending' AND r.expires_at <= v_now THEN
            PERFORM @schema.end_hold(r, 'expired', NULL, v_now);
            r.state := 'expired'; r.updated_at := v_now; r.expires_at := NULL;
            v_expired := true;
        END IF;
        IF p_op = 'confirm' THEN
            IF r.state = 'pending' THEN
                PERFORM @schema.move_holds(r.hold_resource, r.hold_type, r.hold_amount,
                    'pending', 'confirmed');
                UPDATE @schema.reservation x SET state = 'confirmed', updated_at = v_now,
                    expires_at = NULL WHERE x.id = p_id;
                r.state := 'confirmed'; r.updated_at := v_now; r.expires_at := NULL;
                v_outcome := 'changed';
                PERFORM @schema.notify(jsonb_build_object('event', 'confirmed',
                    'reservation', r.id, 'requester', r.requester), v_now);
            ELSIF r.state <> 'confirmed' THEN
                v_outcome := 'wrong-state';
            END IF;
        ELSIF p_op = 'renew' THEN
            IF r.state = 'pending' THEN
                UPDATE @schema.reservation x SET updated_at = v_now, expires_at = v_now + p_ttl
                WHERE x.id = p_id;
                r.updated_at := v_now; r.expires_at := v_now + p_ttl;
                v_outcome := 'changed';
                PERFORM @schema.notify(jsonb_build_object('event', 'renewed',
                    'reservation', r.id, 'expires_at', r.expires_at), v_now);
            ELSIF r.state <> 'confirmed' THEN
                v_outcome := 'wrong-state';
            END IF;
        ELSIF p_op IN ('release', 'cancel', 'preempt') THEN
            v_target := CASE p_op WHEN 'release' THEN 'released'
                WHEN 'cancel' THEN 'cancelled' ELSE 'preempted' END;
            IF (p_op = 'release' AND r.state = 'confirmed')
                OR (p_op = 'cancel' AND r.state = 'pending')
                OR (p_op = 'preempt' AND r.state IN ('pending', 'confirmed')) THEN
                PERFORM @schema.end_hold(r, v_target, p_by, v_now);
                -- The holds are reported as they were, so the caller can credit its view.
                v_outcome := 'changed';
                r.state := v_target; r.updated_at := v_now; r.expires_at := NULL;
            ELSIF r.state <> v_target THEN
                v_outcome := 'wrong-state';
            END IF;
        END IF;
    END IF;
    RETURN QUERY SELECT v_outcome, v_expired, v_now, r.id, r.state, r.fencing, r.requester,
        r.priority, r.created_at, r.updated_at, r.expires_at, r.labels, r.preemptible, r.items,
        r.hold_resource, r.hold_type, r.hold_amount;
END
$$;

-- Expires the pending holds due by `p_now` (at most `p_limit`, skipping rows another
-- transaction has locked: it expires them itself) and forgets ended reservations older than
-- the retention. Returns what it expired.
CREATE FUNCTION @schema.sweep(p_now bigint, p_retention bigint, p_limit integer)
    RETURNS SETOF @schema.reservation
    LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint := coalesce(p_now, @schema.now_ns());
    r @schema.reservation;
BEGIN
    FOR r IN SELECT * FROM @schema.reservation x
        WHERE x.state = 'pending' AND x.expires_at <= v_now
        ORDER BY x.id LIMIT p_limit FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM @schema.end_hold(r, 'expired', NULL, v_now);
        r.state := 'expired'; r.updated_at := v_now; r.expires_at := NULL; r.ended_at := v_now;
        RETURN NEXT r;
    END LOOP;
    DELETE FROM @schema.reservation x WHERE x.id IN (
        SELECT y.id FROM @schema.reservation y WHERE y.ended_at <= v_now - p_retention
        LIMIT p_limit FOR UPDATE SKIP LOCKED);
END
$$;

-- rm-postgres functions: the hot path (reserve, act), sweeps and sessions. Replaced as a
-- whole (every function of the schema dropped first) whenever this text changes, under the
-- migrations' advisory lock. `@schema` is replaced by the quoted schema name and `@channel`
-- by the NOTIFY channel's name as a string literal.
--
-- Amounts are thousandths of a capacity's unit (as `Quantity::as_milli`); instants are
-- nanoseconds, by the database server's clock unless a client passes its own (tests with a
-- manual clock). Locks are always taken in one order: a session row, then reservation rows
-- (in id order), then capacity rows (in registration position, then type by bytes: COLLATE
-- "C"; a grant's and a reservation's hold arrays are in that order, so a loop over them
-- locks in it); catalog changes lock the `meta` row first.

-- The server's clock in nanoseconds since the Unix epoch.
CREATE FUNCTION @schema.now_ns() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint
$$;

-- Publishes an event to listeners in any process (on commit), when any is registered:
-- `p_kind` is the JSON of the
-- event's kind, `p_short` the same without its items, sent when the payload would pass
-- NOTIFY's limit (marked truncated).
CREATE FUNCTION @schema.notify(p_kind text, p_short text, p_at bigint) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    v_head text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @schema.listener) THEN
        RETURN;
    END IF;
    v_head := '{"sequence":' || nextval('@schema.event_sequence') || ',"at":' || p_at;
    IF octet_length(p_kind) > 7800 THEN
        PERFORM pg_notify(@channel, v_head || ',"truncated":true,"kind":' || p_short || '}');
    ELSE
        PERFORM pg_notify(@channel, v_head || ',"kind":' || p_kind || '}');
    END IF;
END
$$;

-- Adds `p_sign` times the holds' amounts to what their capacity rows hold, row by row in
-- the arrays' order, which is the global lock order (see `reserve`): two transactions never
-- wait for each other's rows. (One single-row update per hold costs the server less than
-- one statement joining the arrays.)
CREATE FUNCTION @schema.add_holds(p_res text[], p_type text[], p_amount bigint[],
        p_sign integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. cardinality(p_res) LOOP
        UPDATE @schema.capacity c SET held = c.held + p_sign * p_amount[i]
        WHERE c.resource = p_res[i] AND c.resource_type = p_type[i];
    END LOOP;
END
$$;

-- The `ended` event of a reservation (its items as they were).
CREATE FUNCTION @schema.notify_ended(r @schema.reservation, p_by text, p_now bigint)
        RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_head text;
    v_tail text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @schema.listener) THEN
        RETURN;
    END IF;
    v_head := '{"event":"ended","reservation":' || to_json(r.id) || ',"requester":'
        || to_json(r.requester) || ',"reason":"' || r.state || '","items":';
    v_tail := ',"preempted_by":' || coalesce(to_json(p_by)::text, 'null') || '}';
    PERFORM @schema.notify(v_head || r.items || v_tail, v_head || '[]' || v_tail, p_now);
END
$$;

-- Ends an active reservation (locked by the caller) as `p_to`, crediting its holds.
CREATE FUNCTION @schema.end_hold(r @schema.reservation, p_to text, p_by text, p_now bigint)
        RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM @schema.add_holds(r.hold_resource, r.hold_type, r.hold_amount, -1);
    UPDATE @schema.reservation SET state = p_to, updated_at = p_now, expires_at = NULL,
        ended_at = p_now
    WHERE id = r.id;
    r.state := p_to;
    PERFORM @schema.notify_ended(r, p_by, p_now);
END
$$;

-- Grants a planned request: every hold's capacity row must still have the generation the
-- client planned with and room for the amount, checked by the update itself under the row's
-- lock. The client sends the holds in the global lock order (position, then type by bytes),
-- and the rows are updated, so locked, in that order. When one does not fit, the whole
-- call fails with SQLSTATE RM001 and nothing changes: the client reads again and re-plans.
-- An id already used answers 'existing' (same request key) or 'conflict'; an empty plan
-- only looks the id up ('absent' when unused). A hold may be bound to a session
-- (`p_session`, NULL for none), with whether a confirmed hold outlives it (`p_keep`); a
-- session that is not alive refuses the grant with SQLSTATE RM003. A waiter's grant names its
-- place in the queue (`p_waiter`), which it leaves in the same transaction (a retried grant
-- too), so a granted waiter needs no statement of its own to leave. The hold is pending until
-- `p_now + p_ttl`, or confirmed from the start when `p_ttl` is NULL.
CREATE FUNCTION @schema.reserve(p_id text, p_key text, p_requester text, p_priority integer,
        p_labels text, p_preemptible boolean, p_items text,
        p_res text[], p_type text[], p_amount bigint[], p_gen bigint[],
        p_now bigint, p_ttl bigint, p_session bigint, p_keep boolean, p_waiter text,
        OUT outcome text, OUT at bigint, OUT fencing bigint, OUT expires_at bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    v_key text;
BEGIN
    at := coalesce(p_now, (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint);
    -- Looked up first, so that a retry takes no fencing token (tokens of grants have no
    -- gaps unless a grant was refused for a stale plan or two connections raced for an id).
    SELECT r.request_key INTO v_key FROM @schema.reservation r WHERE r.id = p_id;
    IF v_key IS NOT NULL OR cardinality(p_res) = 0 THEN
        outcome := CASE WHEN v_key IS NULL THEN 'absent' WHEN v_key = p_key THEN 'existing'
            ELSE 'conflict' END;
        IF outcome = 'existing' AND p_waiter IS NOT NULL THEN
            -- A retried waiter's grant: it leaves the queue as the first grant did.
            DELETE FROM @schema.waiter w WHERE w.reservation = p_waiter;
        END IF;
        RETURN;
    END IF;
    IF p_session IS NOT NULL THEN
        -- Shared with other grants of the session, exclusive with its end: a hold is never
        -- bound to a session that has ended.
        PERFORM 1 FROM @schema.session s WHERE s.id = p_session AND s.expires_at > at
            FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'session % has ended', p_session USING ERRCODE = 'RM003';
        END IF;
    END IF;
    fencing := nextval('@schema.fencing');
    -- No TTL: the hold is granted confirmed, without a deadline.
    expires_at := at + p_ttl;
    INSERT INTO @schema.reservation AS x (id, request_key, requester, priority, state,
        fencing, created_at, updated_at, expires_at, labels, preemptible, items,
        hold_resource, hold_type, hold_amount, session, keep_confirmed)
    VALUES (p_id, p_key, p_requester, p_priority,
        CASE WHEN p_ttl IS NULL THEN 'confirmed' ELSE 'pending' END, fencing, at, at,
        expires_at,
        p_labels, p_preemptible, p_items, p_res, p_type, p_amount, p_session,
        coalesce(p_keep, false))
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT r.request_key INTO v_key FROM @schema.reservation r WHERE r.id = p_id;
        outcome := CASE WHEN v_key = p_key THEN 'existing' ELSE 'conflict' END;
        fencing := NULL;
        expires_at := NULL;
        IF outcome = 'existing' AND p_waiter IS NOT NULL THEN
            DELETE FROM @schema.waiter w WHERE w.reservation = p_waiter;
        END IF;
        RETURN;
    END IF;
    FOR i IN 1 .. cardinality(p_res) LOOP
        UPDATE @schema.capacity c SET held = c.held + p_amount[i]
        WHERE c.resource = p_res[i] AND c.resource_type = p_type[i]
            AND c.generation = p_gen[i] AND c.maximum - c.external - c.held >= p_amount[i];
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the plan is stale' USING ERRCODE = 'RM001';
        END IF;
    END LOOP;
    IF p_waiter IS NOT NULL THEN
        -- A waiter granted leaves the queue in the same transaction.
        DELETE FROM @schema.waiter w WHERE w.reservation = p_waiter;
    END IF;
    -- The events, built only while someone listens.
    IF EXISTS (SELECT 1 FROM @schema.listener) THEN
        PERFORM @schema.notify(
            '{"event":"reserved","reservation":' || to_json(p_id) || ',"requester":'
                || to_json(p_requester) || ',"priority":' || p_priority || ',"items":'
                || p_items || ',"fencing_token":' || fencing || '}',
            '{"event":"reserved","reservation":' || to_json(p_id) || ',"requester":'
                || to_json(p_requester) || ',"priority":' || p_priority || ',"items":[]'
                || ',"fencing_token":' || fencing || '}',
            at);
        IF p_ttl IS NULL THEN
            PERFORM @schema.notify(
                '{"event":"confirmed","reservation":' || to_json(p_id) || ',"requester":'
                    || to_json(p_requester) || '}', '{}', at);
        END IF;
    END IF;
    outcome := 'granted';
END
$$;

-- One operation on one reservation: 'get', 'lock' (get, keeping the row locked for the
-- caller's transaction), 'confirm', 'renew', 'release', 'cancel', 'preempt'. A pending hold
-- past its deadline expires first. Outcomes: 'changed', 'same' (nothing to do, or a get),
-- 'unknown', 'stale-fence', 'wrong-state', 'session-ended' (the hold's session is past its
-- deadline: mutations are refused until the sweep ends it). The row is the reservation as it
-- is afterwards;
-- `expired_now` says this call expired it. Confirm, release and cancel of a hold in the
-- right state are one guarded update of its row (the common case).
CREATE FUNCTION @schema.act(p_id text, p_fence bigint, p_now bigint, p_op text,
        p_ttl bigint, p_by text,
        OUT outcome text, OUT expired_now boolean, OUT at bigint, OUT id text,
        OUT state text, OUT fencing bigint, OUT requester text, OUT priority integer,
        OUT created_at bigint, OUT updated_at bigint, OUT expires_at bigint,
        OUT labels text, OUT preemptible boolean, OUT items text,
        OUT hold_resource text[], OUT hold_type text[], OUT hold_amount bigint[])
    LANGUAGE plpgsql AS $$
DECLARE
    r @schema.reservation;
    v_target text;
BEGIN
    at := coalesce(p_now, (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint);
    expired_now := false;
    outcome := 'same';
    IF p_op = 'confirm' THEN
        UPDATE @schema.reservation x SET state = 'confirmed', updated_at = at,
            expires_at = NULL
        WHERE x.id = p_id AND x.state = 'pending' AND x.expires_at > at
            AND (p_fence IS NULL OR x.fencing = p_fence)
            AND (x.session IS NULL OR EXISTS (SELECT 1 FROM @schema.session s
                WHERE s.id = x.session AND s.expires_at > at))
        RETURNING x.* INTO r;
        IF FOUND THEN
            outcome := 'changed';
            IF EXISTS (SELECT 1 FROM @schema.listener) THEN
                PERFORM @schema.notify(
                    '{"event":"confirmed","reservation":' || to_json(r.id) || ',"requester":'
                        || to_json(r.requester) || '}', '{}', at);
            END IF;
        END IF;
    ELSIF p_op IN ('release', 'cancel') THEN
        v_target := CASE p_op WHEN 'release' THEN 'released' ELSE 'cancelled' END;
        UPDATE @schema.reservation x SET state = v_target, updated_at = at,
            expires_at = NULL, ended_at = at
        WHERE x.id = p_id AND (p_fence IS NULL OR x.fencing = p_fence)
            AND CASE p_op WHEN 'release' THEN x.state = 'confirmed'
                ELSE x.state = 'pending' AND x.expires_at > at END
            AND (x.session IS NULL OR (x.state = 'confirmed' AND x.keep_confirmed)
                OR EXISTS (SELECT 1 FROM @schema.session s
                    WHERE s.id = x.session AND s.expires_at > at))
        RETURNING x.* INTO r;
        IF FOUND THEN
            outcome := 'changed';
            PERFORM @schema.add_holds(r.hold_resource, r.hold_type, r.hold_amount, -1);
            IF EXISTS (SELECT 1 FROM @schema.listener) THEN
                PERFORM @schema.notify_ended(r, NULL, at);
            END IF;
        END IF;
    END IF;
    IF outcome = 'same' THEN
        -- Not the common case: read (and lock) the row to say why, expiring it if due.
        IF p_op = 'get' THEN
            SELECT * INTO r FROM @schema.reservation x WHERE x.id = p_id;
            IF FOUND AND r.state = 'pending' AND r.expires_at <= at THEN
                SELECT * INTO r FROM @schema.reservation x WHERE x.id = p_id FOR UPDATE;
            END IF;
        ELSE
            SELECT * INTO r FROM @schema.reservation x WHERE x.id = p_id FOR UPDATE;
        END IF;
        IF NOT FOUND THEN
            outcome := 'unknown';
            id := p_id;
            RETURN;
        END IF;
        IF p_fence IS NOT NULL AND p_fence <> r.fencing THEN
            outcome := 'stale-fence';
        ELSE
            IF r.state = 'pending' AND r.expires_at <= at THEN
                PERFORM @schema.end_hold(r, 'expired', NULL, at);
                r.state := 'expired'; r.updated_at := at; r.expires_at := NULL;
                expired_now := true;
            END IF;
            IF p_op IN ('confirm', 'renew', 'release', 'cancel')
                AND r.state IN ('pending', 'confirmed') AND r.session IS NOT NULL
                AND NOT (r.state = 'confirmed' AND r.keep_confirmed)
                AND NOT EXISTS (SELECT 1 FROM @schema.session s
                    WHERE s.id = r.session AND s.expires_at > at) THEN
                -- Its session ended (the next sweep ends the hold): a worker that was paused
                -- past its session's TTL acts on it no more.
                outcome := 'session-ended';
            ELSIF p_op = 'renew' THEN
                IF r.state = 'pending' THEN
                    UPDATE @schema.reservation x SET updated_at = at, expires_at = at + p_ttl
                    WHERE x.id = p_id;
                    r.updated_at := at; r.expires_at := at + p_ttl;
                    outcome := 'changed';
                    PERFORM @schema.notify('{"event":"renewed","reservation":'
                        || to_json(r.id) || ',"expires_at":' || r.expires_at || '}', '{}', at);
                ELSIF r.state <> 'confirmed' THEN
                    outcome := 'wrong-state';
                END IF;
            ELSIF p_op = 'preempt' THEN
                IF r.state IN ('pending', 'confirmed') THEN
                    PERFORM @schema.end_hold(r, 'preempted', p_by, at);
                    outcome := 'changed';
                    r.state := 'preempted'; r.updated_at := at; r.expires_at := NULL;
                ELSIF r.state <> 'preempted' THEN
                    outcome := 'wrong-state';
                END IF;
            ELSIF p_op IN ('confirm', 'release', 'cancel') THEN
                -- The guarded update above did not apply: already there, or not allowed.
                v_target := CASE p_op WHEN 'confirm' THEN 'confirmed'
                    WHEN 'release' THEN 'released' ELSE 'cancelled' END;
                IF r.state <> v_target THEN
                    outcome := 'wrong-state';
                END IF;
            END IF;
        END IF;
    END IF;
    id := r.id; state := r.state; fencing := r.fencing; requester := r.requester;
    priority := r.priority; created_at := r.created_at; updated_at := r.updated_at;
    expires_at := r.expires_at; labels := r.labels; preemptible := r.preemptible;
    items := r.items; hold_resource := r.hold_resource; hold_type := r.hold_type;
    hold_amount := r.hold_amount;
END
$$;

-- Ends the sessions past their deadline, expires the pending holds due by `p_now` (at most
-- `p_limit` of each, skipping rows another transaction has locked: it ends them itself) and
-- forgets ended reservations older than the retention, waiters whose lease ran out and, when
-- `p_listeners`, listeners whose backend is gone. Returns the holds it ended.
CREATE FUNCTION @schema.sweep(p_now bigint, p_retention bigint, p_limit integer,
        p_listeners boolean)
    RETURNS SETOF @schema.reservation
    LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint := coalesce(p_now, (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint);
    r @schema.reservation;
    v_session bigint;
BEGIN
    -- Sessions past their deadline end first: their holds expire or are released.
    FOR v_session IN SELECT s.id FROM @schema.session s WHERE s.expires_at <= v_now
        ORDER BY s.id LIMIT p_limit FOR UPDATE SKIP LOCKED
    LOOP
        RETURN QUERY SELECT * FROM @schema.end_session(v_session, v_now);
    END LOOP;
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
    -- Waiters whose process stopped renewing them.
    DELETE FROM @schema.waiter w WHERE w.expires_at <= v_now;
    -- Listeners whose backend is gone (reading the server's activity costs about as much as
    -- a commit: the periodic sweeps do it, not those before a refusal).
    IF p_listeners THEN
        DELETE FROM @schema.listener l
        WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.pid);
    END IF;
END
$$;

CREATE FUNCTION @schema.open_session(p_name text, p_ttl bigint, p_now bigint,
        OUT id bigint, OUT expires_at bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint := coalesce(p_now, (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint);
BEGIN
    INSERT INTO @schema.session AS s (name, ttl, started_at, expires_at)
    VALUES (p_name, p_ttl, v_now, v_now + p_ttl)
    RETURNING s.id, s.expires_at INTO id, expires_at;
END
$$;

-- Extends a live session by its TTL from now; NULL when it has ended or expired (a session
-- past its deadline is never revived: its holds are being, or will be, ended).
CREATE FUNCTION @schema.renew_session(p_id bigint, p_now bigint) RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint := coalesce(p_now, (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint);
    v_expires bigint;
BEGIN
    UPDATE @schema.session s SET expires_at = v_now + s.ttl
    WHERE s.id = p_id AND s.expires_at > v_now
    RETURNING s.expires_at INTO v_expires;
    RETURN v_expires;
END
$$;

-- Ends session `p_id`: its pending holds expire, its confirmed holds are released (or, when
-- kept, unbound); returns the holds it ended.
CREATE FUNCTION @schema.end_session(p_id bigint, p_now bigint)
    RETURNS SETOF @schema.reservation
    LANGUAGE plpgsql AS $$
DECLARE
    v_now bigint := coalesce(p_now, (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint);
    r @schema.reservation;
    v_to text;
BEGIN
    PERFORM 1 FROM @schema.session s WHERE s.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    FOR r IN SELECT * FROM @schema.reservation x
        WHERE x.session = p_id AND x.state IN ('pending', 'confirmed')
        ORDER BY x.id FOR UPDATE
    LOOP
        IF r.state = 'confirmed' AND r.keep_confirmed THEN
            UPDATE @schema.reservation x SET session = NULL WHERE x.id = r.id;
        ELSE
            v_to := CASE r.state WHEN 'pending' THEN 'expired' ELSE 'released' END;
            PERFORM @schema.end_hold(r, v_to, NULL, v_now);
            r.state := v_to; r.updated_at := v_now; r.expires_at := NULL; r.ended_at := v_now;
            RETURN NEXT r;
        END IF;
    END LOOP;
    DELETE FROM @schema.session s WHERE s.id = p_id;
END
$$;


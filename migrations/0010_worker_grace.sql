-- The slot claim of 0008_claims.sql, with one change: which recovery
-- workers count as alive.  A worker's row says it is gone once its
-- expires_at passes, but a worker whose heartbeat is merely late (a busy
-- or slowed machine) or that its supervisor is starting again after a
-- crash is still there to take the orphans over.  Had the claim taken
-- such a moment for "no worker", the slots of every job whose lease had
-- lapsed would have been given away at once, while their tasks still ran
-- at the provider: one job too many there for each.  A worker seen
-- within one more of its leases counts as alive; with no worker seen for
-- that long, a lapsed lease frees the slot at once, as before.
CREATE OR REPLACE FUNCTION app.mi_claim_slots(p_tenant text,
    p_provider text, p_limit integer, p_owner text)
RETURNS TABLE (job_id uuid, estimate numeric)
LANGUAGE plpgsql AS $$
DECLARE
	lim integer;
	used integer;
	hold interval;
	h record;
	mine integer := 0;
BEGIN
	PERFORM pg_advisory_xact_lock(
	    hashtextextended(p_tenant || '/' || p_provider, 0));
	SELECT l.concurrency INTO lim FROM app.tenant_limits l
	 WHERE l.tenant_id = p_tenant AND l.provider_id IN (p_provider, '*')
	 ORDER BY l.provider_id = '*' LIMIT 1;
	lim := coalesce(lim, p_limit);
	SELECT 2 * max(w.lease_ms) * interval '1 ms' INTO hold
	  FROM app.recovery_workers w
	 WHERE w.expires_at > now() - w.lease_ms * interval '1 ms';
	SELECT count(*) INTO used FROM app.generation_jobs j
	 WHERE j.tenant_id = p_tenant AND j.provider_id = p_provider
	   AND j.status = 'processing'
	   AND (j.lease_expires_at > now() OR (hold IS NOT NULL AND
	        coalesce(j.lease_expires_at, j.updated_at) > now() - hold));
	IF used >= lim THEN
		RETURN;
	END IF;
	FOR h IN
		SELECT j.id, j.cost_usd, j.lease_owner
		  FROM app.generation_jobs j
		 WHERE j.tenant_id = p_tenant AND j.provider_id = p_provider
		   AND j.status = 'pending' AND j.lease_expires_at > now()
		 ORDER BY j.created_at, j.id
		 LIMIT lim - used
		 FOR UPDATE
	LOOP
		IF h.lease_owner IS DISTINCT FROM p_owner THEN
			-- Another worker's job is next: its turn.
			IF mine > 0 THEN
				PERFORM pg_notify('mi_slot',
				    p_tenant || '/' || p_provider);
			END IF;
			EXIT;
		END IF;
		mine := mine + 1;
		job_id := h.id;
		estimate := h.cost_usd;
		RETURN NEXT;
	END LOOP;
END
$$;

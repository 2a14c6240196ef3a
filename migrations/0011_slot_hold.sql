-- The slot claim of 0010_worker_grace.sql, with two changes.
--
-- While a recovery worker runs, a processing job whose lease lapsed keeps
-- its slot until it is taken over or ends, however long that takes.
-- Before, it kept it for two of the worker's leases; on a loaded machine a
-- takeover took longer than that (10.4 s against a 5 s lease in a chaos
-- run), the slot went to a waiting job while the orphan's task still ran,
-- and the provider saw one job more than its limit.  The worker takes
-- every lapsed job over and times out those past their deadline, so the
-- slot is not held forever.
--
-- A worker counts as running if its row lapsed less than a minute ago (or
-- one of its leases, if longer): a supervisor restarting a killed worker,
-- a worker whose heartbeats come late on a slow machine, and mi-recover
-- run from cron every minute all count.  With no worker seen for that
-- long, a lapsed lease frees the slot at once, as before.
CREATE OR REPLACE FUNCTION app.mi_claim_slots(p_tenant text,
    p_provider text, p_limit integer, p_owner text)
RETURNS TABLE (job_id uuid, estimate numeric)
LANGUAGE plpgsql AS $$
DECLARE
	lim integer;
	used integer;
	worker boolean;
	h record;
	mine integer := 0;
BEGIN
	PERFORM pg_advisory_xact_lock(
	    hashtextextended(p_tenant || '/' || p_provider, 0));
	SELECT l.concurrency INTO lim FROM app.tenant_limits l
	 WHERE l.tenant_id = p_tenant AND l.provider_id IN (p_provider, '*')
	 ORDER BY l.provider_id = '*' LIMIT 1;
	lim := coalesce(lim, p_limit);
	SELECT EXISTS (SELECT 1 FROM app.recovery_workers w
	 WHERE w.expires_at > now() - greatest(w.lease_ms * interval '1 ms',
	       interval '1 minute')) INTO worker;
	SELECT count(*) INTO used FROM app.generation_jobs j
	 WHERE j.tenant_id = p_tenant AND j.provider_id = p_provider
	   AND j.status = 'processing'
	   AND (worker OR j.lease_expires_at > now());
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

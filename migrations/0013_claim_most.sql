-- The slot claim of 0011_slot_hold.sql, reading no more waiting jobs
-- than its caller can start (p_most).
--
-- A claim read, and locked, the oldest waiting jobs up to the free slots:
-- with a limit of a million and ten thousand jobs waiting, every claim
-- locked all ten thousand to take the 128 that mi-submit could create
-- soon (a claimed job's deadline runs from its claim, so it must not
-- claim more).  test/bench/pipeline.sh 10000 1 spent 22 ms of the
-- server's CPU a job doing it.
--
-- The waiting jobs' index is in the claim's order to the end (the id
-- breaks ties of created_at), so the claim reads the rows it takes and
-- no others.  Ordered by created_at alone, the planner, which on a table
-- filling this fast believes one job waits, read all 1,493 waiting jobs
-- and sorted them for each claim (3.9 ms).
DROP INDEX app.idx_generation_jobs_pending;
CREATE INDEX idx_generation_jobs_pending
	ON app.generation_jobs (tenant_id, provider_id, created_at, id)
	WHERE status = 'pending';
CREATE FUNCTION app.mi_claim_slots(p_tenant text,
    p_provider text, p_limit integer, p_owner text, p_most integer)
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
		 LIMIT least(lim - used, p_most)
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

-- The four-argument claim is the same claim with no cap of its own.
CREATE OR REPLACE FUNCTION app.mi_claim_slots(p_tenant text,
    p_provider text, p_limit integer, p_owner text)
RETURNS TABLE (job_id uuid, estimate numeric)
LANGUAGE sql AS $$
	SELECT * FROM app.mi_claim_slots(p_tenant, p_provider, p_limit,
	    p_owner, p_limit)
$$;

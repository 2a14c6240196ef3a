-- The slot claim of 0013_claim_most.sql, letting a worker take its own
-- jobs past another worker's older ones when all of them fit.
--
-- A claim stopped at the first waiting job of another worker: its turn.
-- With four workers on one tenant and a limit far away, the workers took
-- turns, each waiting for the others' claims, and four pipelines were
-- slower than two (test/bench/pipeline.sh 10000 4).  Waiting serves
-- first come, first served only when slots are short, and the spec's
-- queue is of the requests in excess of the limit.
--
-- So a claim looks at a window of the queue, at most four times the jobs
-- it may take.  When more slots are free than the window holds, every
-- job in it, this worker's and the others', has a slot to spare: the
-- claim takes this worker's and leaves the others' slots free for their
-- own workers, whom it wakes.  When the free slots are within the
-- window's reach, the limit may be reached by this claim, and the claim
-- stops at another worker's older job as before: strictly in arrival
-- order.
--
-- A roomy claim skips the rows other transactions hold (SKIP LOCKED): it
-- takes none of the others' jobs, so it never waits for a worker
-- renewing its leases.  A claim short of slots locks the rows it reads,
-- as before, in the order renewals lock them.
CREATE OR REPLACE FUNCTION app.mi_claim_slots(p_tenant text,
    p_provider text, p_limit integer, p_owner text, p_most integer)
RETURNS TABLE (job_id uuid, estimate numeric)
LANGUAGE plpgsql AS $$
DECLARE
	lim integer;
	used integer;
	worker boolean;
	win integer;
	roomy boolean;
	h record;
	mine integer := 0;
	others integer := 0;
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
	IF used >= lim OR p_most < 1 THEN
		RETURN;
	END IF;
	win := least(lim - used, 4::bigint * p_most)::integer;
	roomy := lim - used > win;
	IF roomy THEN
		FOR h IN
			SELECT j.id, j.cost_usd, j.lease_owner
			  FROM app.generation_jobs j
			 WHERE j.tenant_id = p_tenant
			   AND j.provider_id = p_provider
			   AND j.status = 'pending' AND j.lease_expires_at > now()
			 ORDER BY j.created_at, j.id
			 LIMIT win
			 FOR UPDATE SKIP LOCKED
		LOOP
			IF h.lease_owner IS DISTINCT FROM p_owner THEN
				others := others + 1;
				CONTINUE;
			END IF;
			EXIT WHEN mine >= p_most;
			mine := mine + 1;
			job_id := h.id;
			estimate := h.cost_usd;
			RETURN NEXT;
		END LOOP;
	ELSE
		FOR h IN
			SELECT j.id, j.cost_usd, j.lease_owner
			  FROM app.generation_jobs j
			 WHERE j.tenant_id = p_tenant
			   AND j.provider_id = p_provider
			   AND j.status = 'pending' AND j.lease_expires_at > now()
			 ORDER BY j.created_at, j.id
			 LIMIT least(lim - used, p_most)
			 FOR UPDATE
		LOOP
			IF h.lease_owner IS DISTINCT FROM p_owner THEN
				-- Another worker's job is next: its turn.
				others := others + 1;
				EXIT;
			END IF;
			mine := mine + 1;
			job_id := h.id;
			estimate := h.cost_usd;
			RETURN NEXT;
		END LOOP;
	END IF;
	IF others > 0 AND mine > 0 THEN
		PERFORM pg_notify('mi_slot', p_tenant || '/' || p_provider);
	END IF;
END
$$;

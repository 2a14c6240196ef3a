-- Recovery (mi-recover(1)): a record in each job of every takeover, and
-- the recovery workers, whose presence keeps the slot of a job whose
-- owner is gone until a worker has taken the job over.

-- What recovery did to the job, oldest first: one object per event,
-- {"at", "by", "event", ...}.  Events: "taken over" (from, status,
-- lease_expired_at: the lease of the owner that was gone), "create found"
-- (a create whose outcome was unknown, found at the provider), "create
-- absent" (not found there: sent again), "create re-sent" (the provider
-- cannot be asked: sent again, once), "timed out".
ALTER TABLE app.generation_jobs
	ADD COLUMN recovery jsonb NOT NULL DEFAULT '[]';

-- Workers that take jobs over (mi-recover), each renewing its row while
-- it runs; a row whose expires_at has passed is a worker that is gone.
CREATE TABLE app.recovery_workers (
	owner varchar(255) PRIMARY KEY,
	lease_ms integer NOT NULL CHECK (lease_ms > 0),
	started_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL
);

-- The slot claim of 0002_jobs.sql, with one change.  A processing job
-- whose lease has lapsed (or was given up) may still run at the provider:
-- while a recovery worker is alive it keeps its slot for twice the
-- worker's lease, the time the worker needs to take it over, so a waiting
-- job cannot take that slot first and put one job too many at the
-- provider.  Without a live worker, a lapsed lease frees the slot at once,
-- as before.
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
	others integer := 0;
BEGIN
	PERFORM pg_advisory_xact_lock(
	    hashtextextended(p_tenant || '/' || p_provider, 0));
	SELECT l.concurrency INTO lim FROM app.tenant_limits l
	 WHERE l.tenant_id = p_tenant AND l.provider_id IN (p_provider, '*')
	 ORDER BY l.provider_id = '*' LIMIT 1;
	lim := coalesce(lim, p_limit);
	SELECT 2 * max(w.lease_ms) * interval '1 ms' INTO hold
	  FROM app.recovery_workers w WHERE w.expires_at > now();
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
		IF others = 0 AND h.lease_owner = p_owner THEN
			mine := mine + 1;
			job_id := h.id;
			estimate := h.cost_usd;
			RETURN NEXT;
		ELSE
			others := others + 1;
		END IF;
	END LOOP;
	IF mine > 0 AND others > 0 THEN
		PERFORM pg_notify('mi_slot', p_tenant || '/' || p_provider);
	END IF;
END
$$;

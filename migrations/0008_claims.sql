-- The slot claim of 0004_recovery.sql, locking only what it takes.  The
-- claim walks the tenant's waiting jobs with the provider oldest first
-- and takes this worker's ones until it meets another worker's, which is
-- next in line: it stops there (a worker waiting is told by NOTIFY), so
-- a claim locks the rows it takes and one more, not every waiting row of
-- every worker.  The first come, first served order, the limit and the
-- hold of lapsed leases while a recovery worker lives are as before.
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

-- A freed slot is announced only when someone waits for it (a job of
-- the tenant with the provider that is pending, held by its worker or
-- queued for any worker to adopt): a NOTIFY
-- takes a lock that serialises every committing transaction that sends
-- one, so a job that ends while no job of its tenant waits with its
-- provider sends none.  A job that starts waiting just as the slot frees
-- (its row not yet visible here) is woken by its worker's slow poll
-- (MI_SLOT_POLL_MS) at the latest.
CREATE OR REPLACE FUNCTION app.generation_jobs_slot_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM app.generation_jobs j
	    WHERE j.tenant_id = NEW.tenant_id
	      AND j.provider_id = NEW.provider_id
	      AND j.status = 'pending'
	      AND (j.lease_expires_at > now() OR j.lease_owner IS NULL)) THEN
		PERFORM pg_notify('mi_slot',
		    NEW.tenant_id || '/' || NEW.provider_id);
	END IF;
	RETURN NULL;
END
$$;

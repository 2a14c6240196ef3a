-- Generation jobs: concurrency slots, provider cooldown, per-tenant limits.
--
-- Job states and leases (see mi-submit(1), mi-poll(1)):
--   pending     the row exists; lease_owner is the process waiting for a
--               slot for it (NULL: queued for any worker, mi-submit
--               --no-wait);
--   processing  holds a slot while lease_expires_at is in the future;
--               provider_job_id is NULL while the create is in flight, or
--               after it when its outcome is unknown (submit_unknown);
--   completed   result_uri is set (a provider URL, or a file:// spool file
--               for synchronous and local providers); artifact_id is set
--               once the result is stored;
--   failed, timed_out  error_code and error_message say why.

-- A processing job may lack provider_job_id (create in flight or unknown);
-- a completed job always knows where its result is.
ALTER TABLE app.generation_jobs DROP CONSTRAINT generation_jobs_check;
ALTER TABLE app.generation_jobs ADD CONSTRAINT generation_jobs_result_check
	CHECK (status <> 'completed' OR result_uri IS NOT NULL);

-- Concurrency per tenant and provider beyond the provider's default.
-- provider_id '*' applies to every provider of the tenant; a row naming
-- the provider wins over '*'.
CREATE TABLE app.tenant_limits (
	tenant_id varchar(255) NOT NULL,
	provider_id varchar(100) NOT NULL DEFAULT '*',
	concurrency integer NOT NULL CHECK (concurrency > 0),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, provider_id)
);

-- Recent failures of each provider, shared by every process: a provider
-- with more than allowed_fails failures within window_ms is skipped until
-- cooldown_until.
CREATE TABLE app.provider_health (
	provider_id varchar(100) PRIMARY KEY,
	failures integer NOT NULL DEFAULT 0,
	window_started_at timestamptz NOT NULL DEFAULT now(),
	cooldown_until timestamptz,
	last_error text,
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- Wakes the processes waiting for a slot (LISTEN mi_slot) when a job
-- leaves processing or gives up its lease; the payload is
-- "tenant_id/provider_id".
CREATE FUNCTION app.generation_jobs_slot_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('mi_slot', NEW.tenant_id || '/' || NEW.provider_id);
	RETURN NULL;
END
$$;

CREATE TRIGGER generation_jobs_slot
	AFTER UPDATE ON app.generation_jobs
	FOR EACH ROW
	WHEN ((OLD.status = 'processing' AND NEW.status <> 'processing') OR
	    (OLD.status IN ('pending', 'processing') AND
	     OLD.lease_owner IS NOT NULL AND NEW.lease_owner IS NULL))
	EXECUTE FUNCTION app.generation_jobs_slot_notify();

-- The slot claim, in the caller's transaction.  Serialises the claims of
-- one tenant and provider with a transaction-scoped advisory lock (the
-- insert of a job takes it too), so the count of live slots is exact
-- however many processes claim.  Of the oldest waiting jobs that fit in
-- the free slots it returns those of p_owner that come before any other
-- owner's: a job never starts before an older one that is still waiting.
-- When it leaves free slots to the next owner in line, it wakes that
-- owner (NOTIFY at commit).  The rows are locked; the caller sets them to
-- processing (or failed, when over budget) before committing.  A waiting
-- job is one whose lease is live; queued jobs without an owner wait for a
-- worker to adopt them (FOR UPDATE SKIP LOCKED, in mi_jobs_adopt).
CREATE FUNCTION app.mi_claim_slots(p_tenant text, p_provider text,
    p_limit integer, p_owner text)
RETURNS TABLE (job_id uuid, estimate numeric)
LANGUAGE plpgsql AS $$
DECLARE
	lim integer;
	used integer;
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
	SELECT count(*) INTO used FROM app.generation_jobs j
	 WHERE j.tenant_id = p_tenant AND j.provider_id = p_provider
	   AND j.status = 'processing' AND j.lease_expires_at > now();
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

-- Counts a failure of a provider; returns true when it starts (or is in)
-- a cooldown.
CREATE FUNCTION app.mi_provider_failed(p_provider text, p_allowed integer,
    p_window_ms integer, p_cooldown_ms integer, p_error text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	h app.provider_health;
BEGIN
	INSERT INTO app.provider_health AS x (provider_id, failures,
	    window_started_at, last_error)
	VALUES (p_provider, 1, now(), p_error)
	ON CONFLICT (provider_id) DO UPDATE SET
		failures = CASE WHEN x.window_started_at >
		    now() - p_window_ms * interval '1 millisecond'
		    THEN x.failures + 1 ELSE 1 END,
		window_started_at = CASE WHEN x.window_started_at >
		    now() - p_window_ms * interval '1 millisecond'
		    THEN x.window_started_at ELSE now() END,
		last_error = EXCLUDED.last_error,
		updated_at = now()
	RETURNING * INTO h;
	IF h.failures > p_allowed THEN
		UPDATE app.provider_health
		   SET cooldown_until = now() + p_cooldown_ms *
		       interval '1 millisecond', failures = 0,
		       window_started_at = now()
		 WHERE provider_id = p_provider;
		RETURN true;
	END IF;
	RETURN coalesce(h.cooldown_until > now(), false);
END
$$;

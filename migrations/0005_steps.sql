-- Steps: every request is a step of a run (app.run_steps), with one live
-- job chain per step, a record of its whole story in run_steps.debug, and
-- a cache of stored results per tenant (app.step_cache).  See mi(7),
-- section STEPS.

-- The workflow the step belongs to (part of its cache key) and its
-- debug output: provider, model, estimated and reported cost, every job
-- of every attempt with its cost and error, the cache key and whether it
-- hit, warnings.
ALTER TABLE app.run_steps
	ADD COLUMN workflow_name varchar(255) NOT NULL DEFAULT '',
	ADD COLUMN debug jsonb NOT NULL DEFAULT '{}';
CREATE INDEX idx_run_steps_tenant ON app.run_steps (tenant_id);

-- Which attempt of its step a job belongs to (a fallback keeps the
-- attempt of the job it replaced), the estimate made before the create
-- (cost_usd is replaced by the provider's figure), the model of the
-- provider's definition, and whether the result was found only by the
-- last look at the deadline.
ALTER TABLE app.generation_jobs
	ADD COLUMN step_attempt integer NOT NULL DEFAULT 1,
	ADD COLUMN estimate_usd decimal(10,4),
	ADD COLUMN provider_model varchar(255),
	ADD COLUMN late boolean NOT NULL DEFAULT false;
-- One chain per attempt of a step: the first job of an attempt is the
-- only job of that attempt without a previous job.  mi admits a step
-- under a row lock on its run_steps row; this index holds even for
-- writers that do not.
CREATE UNIQUE INDEX idx_generation_jobs_step_attempt
	ON app.generation_jobs (run_step_id, step_attempt)
	WHERE previous_job_id IS NULL;

-- Artifacts name the step and the job that made their bytes; a result
-- served from the step cache has cache_hit true (and costs nothing).
ALTER TABLE app.artifacts
	ADD COLUMN run_step_id uuid,
	ADD COLUMN job_id uuid,
	ADD COLUMN cache_hit boolean NOT NULL DEFAULT false;
CREATE INDEX idx_artifacts_run_step ON app.artifacts (run_step_id);

-- A cache entry remembers the run that wrote it (scope run_only serves
-- that run alone) and when it expires (cache_ttl_sec; NULL: never).
ALTER TABLE app.step_cache
	ADD COLUMN run_id uuid,
	ADD COLUMN expires_at timestamptz;
CREATE INDEX idx_step_cache_tenant ON app.step_cache (tenant_id);

-- Keeps the step of a job current as the job moves, whichever program
-- moves it (mi-submit, mi-poll, mi-fetch, mi-recover): pending while the
-- first job of an attempt waits, running once a job holds a slot or a
-- create went out, completed when the result is stored, failed when the
-- attempt's last job failed or timed out with no job after it.  Jobs of an
-- older attempt only update the debug output.
CREATE FUNCTION app.mi_step_track() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	s app.run_steps;
	cur boolean;
	st text;
	warn jsonb;
BEGIN
	IF NEW.run_step_id IS NULL THEN
		RETURN NULL;
	END IF;
	SELECT * INTO s FROM app.run_steps r WHERE r.id = NEW.run_step_id
	   FOR UPDATE;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	cur := NEW.step_attempt = s.attempt;
	st := s.status;
	IF cur THEN
		IF TG_OP = 'INSERT' THEN
			st := CASE WHEN NEW.previous_job_id IS NULL
			    THEN 'pending' ELSE 'running' END;
		ELSIF NEW.artifact_id IS NOT NULL THEN
			st := 'completed';
		ELSIF NEW.status IN ('failed', 'timed_out') THEN
			IF NOT EXISTS (SELECT 1 FROM app.generation_jobs n
			    WHERE n.run_step_id = NEW.run_step_id
			      AND n.previous_job_id = NEW.id) THEN
				st := 'failed';
			END IF;
		ELSIF NEW.status IN ('processing', 'completed') OR
		    NEW.submit_count > 0 THEN
			st := 'running';
		END IF;
	END IF;
	IF NEW.artifact_id IS NOT NULL THEN
		SELECT a.metadata->'warnings' INTO warn FROM app.artifacts a
		 WHERE a.id = NEW.artifact_id;
	END IF;
	UPDATE app.run_steps r SET
		status = st,
		started_at = CASE WHEN st IN ('running', 'completed', 'failed')
		    THEN coalesce(r.started_at, now()) ELSE r.started_at END,
		ended_at = CASE WHEN st IN ('completed', 'failed') THEN
		    CASE WHEN st = s.status THEN coalesce(r.ended_at, now())
		    ELSE now() END END,
		duration_ms = CASE WHEN st IN ('completed', 'failed') THEN
		    CASE WHEN st = s.status AND r.duration_ms IS NOT NULL
		    THEN r.duration_ms ELSE (extract(epoch FROM now() -
		    coalesce(r.started_at, r.created_at)) * 1000)::integer END
		    END,
		error = CASE WHEN NOT cur THEN r.error
		    WHEN st = 'failed' AND s.status <> 'failed' THEN
		    jsonb_build_object(
			'code', coalesce(NEW.error_code, 'PROVIDER_ERROR'),
			'message', coalesce(NEW.error_message, 'job failed'),
			'attempt', r.attempt,
			'timestamp', now(),
			'details', jsonb_build_object('job_id', NEW.id,
			    'provider_id', NEW.provider_id,
			    'status', NEW.status))
		    WHEN st = 'failed' THEN r.error END,
		output_artifact_ids = CASE WHEN cur AND
		    NEW.artifact_id IS NOT NULL THEN
		    jsonb_build_array(NEW.artifact_id)
		    ELSE r.output_artifact_ids END,
		debug = r.debug || CASE WHEN cur THEN jsonb_build_object(
			'provider', NEW.provider_id,
			'model', NEW.provider_model,
			'estimated_cost_usd', NEW.estimate_usd,
			'reported_cost_usd', CASE WHEN NEW.cost_source =
			    'provider' THEN NEW.cost_usd END)
		    ELSE '{}' END ||
		    CASE WHEN jsonb_typeof(warn) = 'array' THEN
		    jsonb_build_object('warnings', warn) ELSE '{}' END ||
		    (SELECT jsonb_build_object(
			'cost_usd', coalesce(sum(j.cost_usd), 0),
			'attempts', jsonb_agg(jsonb_build_object(
			    'attempt', j.step_attempt,
			    'job_id', j.id,
			    'provider_id', j.provider_id,
			    'model', j.provider_model,
			    'status', j.status,
			    'estimated_cost_usd', j.estimate_usd,
			    'cost_usd', j.cost_usd,
			    'cost_source', j.cost_source,
			    'fallback_from', j.previous_job_id,
			    'creates', j.submit_count,
			    'late', j.late,
			    'error', CASE WHEN j.error_code IS NOT NULL THEN
				jsonb_build_object('code', j.error_code,
				    'message', j.error_message) END,
			    'started_at', j.started_at,
			    'completed_at', j.completed_at)
			    ORDER BY j.created_at, j.id))
		       FROM app.generation_jobs j
		      WHERE j.run_step_id = NEW.run_step_id),
		updated_at = now()
	 WHERE r.id = s.id;
	RETURN NULL;
END
$$;

CREATE TRIGGER generation_jobs_step_insert
	AFTER INSERT ON app.generation_jobs
	FOR EACH ROW
	EXECUTE FUNCTION app.mi_step_track();

CREATE TRIGGER generation_jobs_step_update
	AFTER UPDATE ON app.generation_jobs
	FOR EACH ROW
	WHEN (OLD.status IS DISTINCT FROM NEW.status OR
	    OLD.artifact_id IS DISTINCT FROM NEW.artifact_id OR
	    OLD.submit_count IS DISTINCT FROM NEW.submit_count OR
	    OLD.cost_usd IS DISTINCT FROM NEW.cost_usd OR
	    OLD.late IS DISTINCT FROM NEW.late)
	EXECUTE FUNCTION app.mi_step_track();

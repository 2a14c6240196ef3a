-- The step tracking of 0009_step_recovery.sql, cheaper for a step of one
-- job, which most steps are.
--
-- Every change of a job that a step shows (five a job: its insert, its
-- slot, its create, its end, its artifact) rebuilt the step's list of
-- attempts from all of the step's jobs, and read the step's row twice
-- (locked, then updated).  In a pgbench script of one job's five changes
-- (synchronous_commit off) the trigger was a third of their cost.
--
-- The list is the trigger's alone: every job of a step fires it when it
-- is inserted, so the list the step holds names every job it has.  When
-- that list is empty and this is the step's first job, or names this
-- job alone, the new list is built from this job's row; otherwise it is
-- rebuilt from all of them as before.  The step's row is locked once, by
-- a read of the three fields the decision needs.  What the step shows is
-- the same (steps.bats compares it with the full rebuild).

-- A job as its step's list of attempts shows it.
CREATE FUNCTION app.mi_step_attempt(j app.generation_jobs) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
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
	    'completed_at', j.completed_at,
	    'recovery', CASE WHEN jsonb_array_length(j.recovery) > 0
		THEN j.recovery END)
$$;

CREATE OR REPLACE FUNCTION app.mi_step_track() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	s_status text;
	s_attempt integer;
	known jsonb;
	cur boolean;
	st text;
	warn jsonb;
	jobs jsonb;
BEGIN
	IF NEW.run_step_id IS NULL THEN
		RETURN NULL;
	END IF;
	SELECT r.status, r.attempt, r.debug->'attempts'
	  INTO s_status, s_attempt, known
	  FROM app.run_steps r WHERE r.id = NEW.run_step_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	cur := NEW.step_attempt = s_attempt;
	st := s_status;
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
	IF (known IS NULL AND TG_OP = 'INSERT') OR
	    (jsonb_typeof(known) = 'array' AND jsonb_array_length(known) = 1
	     AND known->0->>'job_id' = NEW.id::text) THEN
		jobs := jsonb_build_object(
		    'cost_usd', coalesce(NEW.cost_usd, 0),
		    'attempts', jsonb_build_array(app.mi_step_attempt(NEW)));
	ELSE
		SELECT jsonb_build_object(
		    'cost_usd', coalesce(sum(j.cost_usd), 0),
		    'attempts', jsonb_agg(app.mi_step_attempt(j)
			ORDER BY j.created_at, j.id))
		  INTO jobs
		  FROM app.generation_jobs j
		 WHERE j.run_step_id = NEW.run_step_id;
	END IF;
	UPDATE app.run_steps r SET
		status = st,
		started_at = CASE WHEN st IN ('running', 'completed', 'failed')
		    THEN coalesce(r.started_at, now()) ELSE r.started_at END,
		ended_at = CASE WHEN st IN ('completed', 'failed') THEN
		    CASE WHEN st = s_status THEN coalesce(r.ended_at, now())
		    ELSE now() END END,
		duration_ms = CASE WHEN st IN ('completed', 'failed') THEN
		    CASE WHEN st = s_status AND r.duration_ms IS NOT NULL
		    THEN r.duration_ms ELSE (extract(epoch FROM now() -
		    coalesce(r.started_at, r.created_at)) * 1000)::integer END
		    END,
		error = CASE WHEN NOT cur THEN r.error
		    WHEN st = 'failed' AND s_status <> 'failed' THEN
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
		    jobs,
		updated_at = now()
	 WHERE r.id = NEW.run_step_id;
	RETURN NULL;
END
$$;

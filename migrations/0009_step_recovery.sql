-- The step's debug output (app.run_steps.debug, seed 001's FR-020) shows
-- what recovery decided for each attempt: the "recovery" events of its
-- job (taken over, a lost create found at the provider or absent and
-- sent again, held for an operator, timed out), so a step's whole story
-- is in one row.  The function of 0005_steps.sql with that one field,
-- and the trigger also fires when a job's recovery events change.
CREATE OR REPLACE FUNCTION app.mi_step_track() RETURNS trigger
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
			    'completed_at', j.completed_at,
			    'recovery', CASE WHEN jsonb_array_length(j.recovery) > 0
				THEN j.recovery END)
			    ORDER BY j.created_at, j.id))
		       FROM app.generation_jobs j
		      WHERE j.run_step_id = NEW.run_step_id),
		updated_at = now()
	 WHERE r.id = s.id;
	RETURN NULL;
END
$$;

DROP TRIGGER generation_jobs_step_update ON app.generation_jobs;
CREATE TRIGGER generation_jobs_step_update
	AFTER UPDATE ON app.generation_jobs
	FOR EACH ROW
	WHEN (OLD.status IS DISTINCT FROM NEW.status OR
	    OLD.artifact_id IS DISTINCT FROM NEW.artifact_id OR
	    OLD.submit_count IS DISTINCT FROM NEW.submit_count OR
	    OLD.cost_usd IS DISTINCT FROM NEW.cost_usd OR
	    OLD.late IS DISTINCT FROM NEW.late OR
	    OLD.recovery IS DISTINCT FROM NEW.recovery)
	EXECUTE FUNCTION app.mi_step_track();

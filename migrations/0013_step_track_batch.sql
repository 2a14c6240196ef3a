-- A step follows its jobs once per statement, not once per row.
--
-- The row trigger of 0009_step_recovery.sql ran a PL/pgSQL call, a locking
-- read and an update of app.run_steps for every changed job: about a
-- quarter of the server's CPU in a pipeline of sound effects, where the
-- claims, the create intents and the completions each change many jobs
-- in one statement.  This statement trigger reads the changed jobs from
-- the statement's transition tables, in one query, and updates each of
-- their steps by its key (one statement joined with a transition table
-- of unknown size read every step).  The step is the same as before,
-- field by field:
--   * only a change of status, artifact, creates, cost, late or recovery
--     counts (the old trigger's WHEN);
--   * the status is computed from the step row being updated (r), so a
--     concurrent change of the step is seen as the old FOR UPDATE saw it
--     (the update rechecks the newest row version);
--   * two jobs of one step changed by one statement (rare: a chain's
--     jobs are written apart) count as the one that says most: the
--     artifact, then a failure, then the newest change.
-- Inserts keep the row trigger (one row a statement).
CREATE FUNCTION app.mi_step_status(cur boolean, old_status text,
    job_status text, has_artifact boolean, creates integer,
    has_next boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE
	    WHEN cur IS NOT TRUE THEN old_status
	    WHEN has_artifact THEN 'completed'
	    WHEN job_status IN ('failed', 'timed_out') THEN
		CASE WHEN has_next THEN old_status ELSE 'failed' END
	    WHEN job_status IN ('processing', 'completed') OR creates > 0
		THEN 'running'
	    ELSE old_status END
$$;

CREATE FUNCTION app.mi_step_track_batch() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	c record;
BEGIN
	FOR c IN SELECT DISTINCT ON (n.run_step_id) n.*,
		    EXISTS (SELECT 1 FROM app.generation_jobs x
			WHERE x.run_step_id = n.run_step_id
			  AND x.previous_job_id = n.id) AS has_next,
		    (SELECT a.metadata->'warnings' FROM app.artifacts a
			WHERE a.id = n.artifact_id) AS warn
		  FROM new_jobs n JOIN old_jobs o ON o.id = n.id
		 WHERE n.run_step_id IS NOT NULL
		   AND (o.status IS DISTINCT FROM n.status OR
		    o.artifact_id IS DISTINCT FROM n.artifact_id OR
		    o.submit_count IS DISTINCT FROM n.submit_count OR
		    o.cost_usd IS DISTINCT FROM n.cost_usd OR
		    o.late IS DISTINCT FROM n.late OR
		    o.recovery IS DISTINCT FROM n.recovery)
		 ORDER BY n.run_step_id, n.artifact_id IS NOT NULL DESC,
		    n.status IN ('failed', 'timed_out') DESC,
		    n.updated_at DESC
	LOOP
	UPDATE app.run_steps r SET
		status = app.mi_step_status(c.step_attempt = r.attempt,
		    r.status, c.status, c.artifact_id IS NOT NULL,
		    c.submit_count, c.has_next),
		started_at = CASE WHEN app.mi_step_status(
		    c.step_attempt = r.attempt, r.status, c.status,
		    c.artifact_id IS NOT NULL, c.submit_count, c.has_next)
		    IN ('running', 'completed', 'failed')
		    THEN coalesce(r.started_at, now()) ELSE r.started_at END,
		ended_at = CASE WHEN app.mi_step_status(
		    c.step_attempt = r.attempt, r.status, c.status,
		    c.artifact_id IS NOT NULL, c.submit_count, c.has_next)
		    IN ('completed', 'failed') THEN
		    CASE WHEN app.mi_step_status(c.step_attempt = r.attempt,
			r.status, c.status, c.artifact_id IS NOT NULL,
			c.submit_count, c.has_next) = r.status
		    THEN coalesce(r.ended_at, now()) ELSE now() END END,
		duration_ms = CASE WHEN app.mi_step_status(
		    c.step_attempt = r.attempt, r.status, c.status,
		    c.artifact_id IS NOT NULL, c.submit_count, c.has_next)
		    IN ('completed', 'failed') THEN
		    CASE WHEN app.mi_step_status(c.step_attempt = r.attempt,
			r.status, c.status, c.artifact_id IS NOT NULL,
			c.submit_count, c.has_next) = r.status AND
			r.duration_ms IS NOT NULL
		    THEN r.duration_ms ELSE (extract(epoch FROM now() -
		    coalesce(r.started_at, r.created_at)) * 1000)::integer END
		    END,
		error = CASE WHEN c.step_attempt IS DISTINCT FROM r.attempt THEN r.error
		    WHEN app.mi_step_status(true, r.status, c.status,
			c.artifact_id IS NOT NULL, c.submit_count,
			c.has_next) = 'failed' AND r.status <> 'failed' THEN
		    jsonb_build_object(
			'code', coalesce(c.error_code, 'PROVIDER_ERROR'),
			'message', coalesce(c.error_message, 'job failed'),
			'attempt', r.attempt,
			'timestamp', now(),
			'details', jsonb_build_object('job_id', c.id,
			    'provider_id', c.provider_id,
			    'status', c.status))
		    WHEN app.mi_step_status(true, r.status, c.status,
			c.artifact_id IS NOT NULL, c.submit_count,
			c.has_next) = 'failed' THEN r.error END,
		output_artifact_ids = CASE WHEN c.step_attempt = r.attempt AND
		    c.artifact_id IS NOT NULL THEN
		    jsonb_build_array(c.artifact_id)
		    ELSE r.output_artifact_ids END,
		debug = r.debug || CASE WHEN c.step_attempt = r.attempt THEN
		    jsonb_build_object(
			'provider', c.provider_id,
			'model', c.provider_model,
			'estimated_cost_usd', c.estimate_usd,
			'reported_cost_usd', CASE WHEN c.cost_source =
			    'provider' THEN c.cost_usd END)
		    ELSE '{}' END ||
		    CASE WHEN jsonb_typeof(c.warn) = 'array' THEN
		    jsonb_build_object('warnings', c.warn) ELSE '{}' END ||
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
		      WHERE j.run_step_id = c.run_step_id),
		updated_at = now()
	 WHERE r.id = c.run_step_id;
	END LOOP;
	RETURN NULL;
END
$$;

DROP TRIGGER generation_jobs_step_update ON app.generation_jobs;
CREATE TRIGGER generation_jobs_step_update
	AFTER UPDATE ON app.generation_jobs
	REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
	FOR EACH STATEMENT
	EXECUTE FUNCTION app.mi_step_track_batch();

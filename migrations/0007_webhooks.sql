-- Webhooks (mi-hook(1)) and remote cancel (mi-cancel(1)).

-- A job is found from a delivery by its provider's own id for it.
CREATE INDEX idx_generation_jobs_provider_job
	ON app.generation_jobs (provider_id, provider_job_id)
	WHERE provider_job_id IS NOT NULL;

-- Every verified delivery, by the provider's delivery id (Standard
-- Webhooks' webhook-id; for schemes without one, the signed job id and
-- timestamp): a second delivery with the same id is a replay.  outcome is
-- what the definition's `webhook` made of it, for the job's worker to
-- apply as it applies a poll answer (NULL: a hint, poll now); applied_at
-- is set when a worker took it.  stored_ms is the time from the delivery
-- to the stored artifact, once there is one (mi-hook's metrics).
CREATE TABLE app.webhook_deliveries (
	provider_id varchar(100) NOT NULL,
	webhook_id varchar(255) NOT NULL,
	job_id uuid NOT NULL,
	received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	outcome jsonb,
	polls_saved integer NOT NULL DEFAULT 0,
	applied_at timestamptz,
	stored_ms integer,
	PRIMARY KEY (provider_id, webhook_id)
);
CREATE INDEX idx_webhook_deliveries_open
	ON app.webhook_deliveries (job_id) WHERE applied_at IS NULL;
CREATE INDEX idx_webhook_deliveries_received
	ON app.webhook_deliveries (received_at);

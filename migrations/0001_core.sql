-- mi core schema: the tables of the platform's data model that mi touches.
-- Forward-only; mi-migrate runs each file in one transaction.

CREATE SCHEMA IF NOT EXISTS app;

CREATE TABLE app.runs (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id varchar(255) NOT NULL,
	workflow_name varchar(255) NOT NULL DEFAULT '',
	workflow_version varchar(50) NOT NULL DEFAULT '',
	trigger_type varchar(20) NOT NULL DEFAULT 'initial'
		CHECK (trigger_type IN ('initial', 'update')),
	trigger_payload jsonb,
	status varchar(20) NOT NULL DEFAULT 'queued'
		CHECK (status IN ('queued', 'running', 'completed', 'failed',
		    'cancelled')),
	base_run_id uuid REFERENCES app.runs(id),
	error jsonb,
	context jsonb,
	started_at timestamptz,
	completed_at timestamptz,
	duration_ms integer,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_runs_tenant ON app.runs (tenant_id);

CREATE TABLE app.run_steps (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	run_id uuid NOT NULL REFERENCES app.runs(id) ON DELETE CASCADE,
	tenant_id varchar(255) NOT NULL,
	step_id varchar(255) NOT NULL,
	skill_id varchar(255) NOT NULL DEFAULT '',
	status varchar(20) NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'running', 'completed', 'skipped',
		    'failed')),
	input_hash varchar(64),
	attempt integer NOT NULL DEFAULT 1,
	output_artifact_ids jsonb,
	error jsonb,
	started_at timestamptz,
	ended_at timestamptz,
	duration_ms integer,
	cache_hit boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (run_id, step_id)
);

CREATE TABLE app.step_cache (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	cache_key varchar(512) NOT NULL UNIQUE,
	tenant_id varchar(255) NOT NULL,
	workflow_name varchar(255) NOT NULL,
	step_id varchar(255) NOT NULL,
	input_hash varchar(64) NOT NULL,
	artifact_ids jsonb NOT NULL DEFAULT '[]',
	data jsonb,
	scope varchar(20) NOT NULL DEFAULT 'global'
		CHECK (scope IN ('global', 'run_only')),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- Runs and steps are not foreign keys of artifacts or jobs: mi is used by
-- workflow steps whose run rows live in the platform, and a store must not
-- fail because the platform wrote its run row later.
CREATE TABLE app.artifacts (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id varchar(255) NOT NULL,
	run_id uuid NOT NULL,
	skill_id varchar(64),
	type varchar(100) NOT NULL,
	uri varchar(2048) NOT NULL,
	content_hash char(64) NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
	size_bytes bigint NOT NULL CHECK (size_bytes > 0),
	filename varchar(255),
	metadata jsonb NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	-- One row per stored path: a second save of the same content in the
	-- same run and type finds this row instead of adding another.
	UNIQUE (tenant_id, run_id, type, content_hash)
);
CREATE INDEX idx_artifacts_tenant ON app.artifacts (tenant_id);
CREATE INDEX idx_artifacts_run ON app.artifacts (run_id);
CREATE INDEX idx_artifacts_skill ON app.artifacts (skill_id);
CREATE INDEX idx_artifacts_tenant_hash ON app.artifacts (tenant_id, content_hash);

CREATE TABLE app.generation_jobs (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id varchar(255) NOT NULL,
	run_id uuid NOT NULL,
	run_step_id uuid NOT NULL,
	provider_id varchar(100) NOT NULL,
	-- NULL until the provider accepted the job (a queued job has none).
	provider_job_id varchar(255),
	media_type varchar(50) NOT NULL
		CHECK (media_type IN ('video', 'audio_sfx', 'audio_bgm',
		    'model_3d', 'image', 'texture', 'environment_map')),
	status varchar(20) NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'processing', 'completed',
		    'failed', 'timed_out')),
	poll_interval_ms integer NOT NULL CHECK (poll_interval_ms > 0),
	timeout_ms integer NOT NULL CHECK (timeout_ms > 0),
	attempts integer NOT NULL DEFAULT 0,
	input_params jsonb NOT NULL,
	result_uri varchar(2048),
	artifact_id uuid REFERENCES app.artifacts(id),
	error_message text,
	cost_usd decimal(10,4),
	started_at timestamptz,
	completed_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),

	-- mi's additions.
	artifact_type varchar(100),
	skill_id varchar(64),
	-- The request as received (prompt, params, fallback chain).
	request jsonb NOT NULL DEFAULT '{}',
	-- Providers still to try after this one, and the job this one replaced.
	fallback jsonb NOT NULL DEFAULT '[]',
	previous_job_id uuid REFERENCES app.generation_jobs(id),
	-- 'estimate' or 'provider': where cost_usd came from.
	cost_source varchar(20),
	error_code varchar(40),
	progress integer,
	-- Provider state kept between submit, poll and fetch (operation
	-- names, result locations, download deadline).
	provider_state jsonb NOT NULL DEFAULT '{}',
	result_expires_at timestamptz,
	next_poll_at timestamptz,
	-- A create was sent but its outcome is unknown (timeout after send).
	submit_unknown boolean NOT NULL DEFAULT false,
	submit_count integer NOT NULL DEFAULT 0,
	-- Ownership lease: a process working the job renews it; an expired
	-- lease frees the job for mi-recover or another worker.
	lease_owner varchar(255),
	lease_expires_at timestamptz,
	CHECK (status = 'pending' OR status = 'failed' OR
	    status = 'timed_out' OR provider_job_id IS NOT NULL)
);
CREATE INDEX idx_generation_jobs_tenant_status
	ON app.generation_jobs (tenant_id, status);
CREATE INDEX idx_generation_jobs_provider_status
	ON app.generation_jobs (provider_id, status);
CREATE INDEX idx_generation_jobs_run_step
	ON app.generation_jobs (run_step_id);
-- Claiming the oldest pending job stays cheap however many finished rows
-- the table holds: only pending rows are in this index.
CREATE INDEX idx_generation_jobs_pending
	ON app.generation_jobs (tenant_id, provider_id, created_at)
	WHERE status = 'pending';
-- Counting the slots a tenant holds with a provider.
CREATE INDEX idx_generation_jobs_processing
	ON app.generation_jobs (tenant_id, provider_id)
	WHERE status = 'processing';
-- Recovery: every job not finished, or finished but not yet stored.
CREATE INDEX idx_generation_jobs_open
	ON app.generation_jobs (lease_expires_at)
	WHERE status IN ('pending', 'processing')
	   OR (status = 'completed' AND artifact_id IS NULL);

-- Monthly spend limits per tenant, optionally per provider.
-- A row with provider_id NULL limits the tenant's spend with all providers
-- together; a row naming a provider limits that provider alone.  Both apply
-- when both exist.  The month is the calendar month in UTC.

CREATE TABLE app.tenant_budgets (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id varchar(255) NOT NULL,
	provider_id varchar(100),
	monthly_limit_usd decimal(12,4) NOT NULL
		CHECK (monthly_limit_usd >= 0),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	-- One tenant-wide row per tenant: NULL provider ids are equal here.
	UNIQUE NULLS NOT DISTINCT (tenant_id, provider_id)
);

-- The month's spend of a tenant (and provider) is summed at every check.
CREATE INDEX idx_generation_jobs_tenant_created
	ON app.generation_jobs (tenant_id, created_at);

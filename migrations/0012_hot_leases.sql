-- Lease changes without index work.
--
-- A take, a renewal or a release of a job's lease changes lease_owner,
-- lease_expires_at and updated_at only.  idx_generation_jobs_open was
-- keyed on lease_expires_at, so each of them was an update of every index
-- of the table (ten) instead of a heap-only (HOT) update.  The recovery
-- scan it serves reads the open jobs (few, however many finished rows the
-- table holds) and filters the lease on the row, so the same partial index
-- keyed on status serves it as well, and no index holds a lease column any
-- more.  (Keyed on created_at, the planner took it for the slot claim's
-- oldest pending job of a tenant and walked every tenant's open jobs:
-- claims went from 459 to 37 a second in test/bench/claim.sh.)  The
-- table keeps a tenth of each page free, so that an updated row version
-- fits beside the old one (pages written from now on).
DROP INDEX IF EXISTS app.idx_generation_jobs_open;
CREATE INDEX idx_generation_jobs_open
	ON app.generation_jobs (status)
	WHERE status IN ('pending', 'processing')
	   OR (status = 'completed' AND artifact_id IS NULL);
ALTER TABLE app.generation_jobs SET (fillfactor = 90);

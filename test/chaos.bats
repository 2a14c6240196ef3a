#!/usr/bin/env bats
# The crash test (test/chaos.sh) with 200 jobs and 50 kills: every job
# final, no create accepted twice, one artifact and one file per job, no
# temporary file left, no limit exceeded, takeovers within two leases.
# By hand, larger: test/chaos.sh 1000 300.

load test_helper

@test "chaos: 200 jobs, 50 kill -9 of submit, poll, fetch and recover processes" {
	CHAOS_LEASE_MS=$((2000 * MI_TEST_SLOW)) run "$BATS_TEST_DIRNAME/chaos.sh" 200 50
	# the figures, and on a failure what failed, before the checks
	printf '# %s\n' "${lines[@]}" | grep '^# chaos:' >&3 || true
	[ "$status" -eq 0 ]
	assert_line 'chaos: PASS'
}

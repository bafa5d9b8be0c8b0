/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Missing features: a skip for a kernel that may lack them, a failure
 * for one whose config promises them.  The test VM's init exports
 * ASYNCFD_REQUIRE=1, as it boots a kernel built with every option that
 * the config file in this directory lists; there, a missing syscall,
 * test producer or null_blk device means the series is broken.
 *
 * Include after kselftest_harness.h.
 */
#ifndef __ASYNCFD_REQUIRED_H
#define __ASYNCFD_REQUIRED_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline bool asyncfd_features_required(void)
{
	const char *val = getenv("ASYNCFD_REQUIRE");

	return val && *val && strcmp(val, "0");
}

/* What SKIP() records, or a failure when features are required. */
static inline __printf(2, 3) void
asyncfd_missing(struct __test_metadata *metadata, const char *fmt, ...)
{
	char *reason = metadata->results->reason;
	size_t len = sizeof(metadata->results->reason);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, len, fmt, ap);
	va_end(ap);
	if (asyncfd_features_required()) {
		fprintf(TH_LOG_STREAM, "# required, but %s\n", reason);
		metadata->exit_code = KSFT_FAIL;
		return;
	}
	fprintf(TH_LOG_STREAM, "#      SKIP      %s\n", reason);
	metadata->exit_code = KSFT_SKIP;
	metadata->trigger = 0;
}

/* For a kselftest_harness test: SKIP(), or fail when required. */
#define MISSING(statement, fmt, ...) do {				\
	asyncfd_missing(_metadata, fmt, ##__VA_ARGS__);			\
	statement;							\
} while (0)

/* For a program outside a test: ksft_exit_skip() or ksft_exit_fail_msg(). */
#define MISSING_EXIT(fmt, ...) asyncfd_missing_exit(fmt, ##__VA_ARGS__)

static inline __printf(1, 2) __noreturn void
asyncfd_missing_exit(const char *fmt, ...)
{
	char reason[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (asyncfd_features_required())
		ksft_exit_fail_msg("required, but %s", reason);
	ksft_exit_skip("%s", reason);
}

#endif /* __ASYNCFD_REQUIRED_H */

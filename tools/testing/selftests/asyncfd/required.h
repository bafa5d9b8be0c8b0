/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Missing features: a skip for a kernel that may lack them, a failure
 * for one whose config promises them.  The test VM's init exports
 * ASYNCFD_REQUIRE=1, as it boots a kernel built with every option that
 * the config file in this directory lists; there, a missing syscall,
 * test producer or null_blk device means the series is broken.
 */
#ifndef __ASYNCFD_REQUIRED_H
#define __ASYNCFD_REQUIRED_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static inline bool asyncfd_features_required(void)
{
	const char *val = getenv("ASYNCFD_REQUIRE");

	return val && *val && strcmp(val, "0");
}

/*
 * For a kselftest_harness test: SKIP() unless features are required,
 * then fail the test with the same reason.
 */
#define MISSING(statement, fmt, ...) do {				\
	if (asyncfd_features_required()) {				\
		TH_LOG("required: " fmt, ##__VA_ARGS__);		\
		_metadata->exit_code = KSFT_FAIL;			\
		statement;						\
	}								\
	SKIP(statement, fmt, ##__VA_ARGS__);				\
} while (0)

/* For a program outside a test: ksft_exit_skip() or ksft_exit_fail_msg(). */
#define MISSING_EXIT(fmt, ...) do {					\
	if (asyncfd_features_required())				\
		ksft_exit_fail_msg("required: " fmt, ##__VA_ARGS__);	\
	ksft_exit_skip(fmt, ##__VA_ARGS__);				\
} while (0)

#endif /* __ASYNCFD_REQUIRED_H */

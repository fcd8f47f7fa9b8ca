/*
 * headercheck.c - proves that modelstream.h stands on its own: it is compiled with
 * nothing else included, with -Werror, as C11 and C99 (`make headercheck`).
 */
#include "modelstream.h"

int headercheck_options(void);

int headercheck_options(void)
{
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms_stats stats = MS_STATS_INIT;

	(void)stats;
	return (int)opts.version + MS_ITER_END;
}

/*
 * test_admission.c - the adaptive window of lib/cache/admission.c, walked with an injected
 * clock: slow start doubles while throughput grows, settles at 3/4 when a doubling buys
 * nothing, then grows by one while throughput still grows; congestion halves it at once
 * and holds it for 2 s; a plateau gives one back but never below the starting window; the
 * window stays within 1..max; without adaptation it is max.
 */
#include <criterion/criterion.h>

#include "cache/admission.h"
#include "modelstream.h"
#include "support/testutil.h"

static void teardown(void)
{
	tu_tmpdir_remove();
}

TestSuite(admission, .fini = teardown, .timeout = 30);

static double fake_now;

static double fake_clock(void *payload)
{
	(void)payload;
	return fake_now;
}

typedef struct {
	ms__admission *a;
	uint64_t bytes;
	unsigned throttles;
} controller;

static controller open_controller(unsigned max_window, bool adaptive)
{
	ms__admission_options o = {
	    .max_window = max_window,
	    .adaptive = adaptive,
	    .clock = fake_clock,
	};
	controller c = {0};

	fake_now = 1000;
	cr_assert_eq(ms__admission_open(&c.a, tu_tmpdir(), &o), 0, "%s", ms_error_last()->message);
	return c;
}

static unsigned window(const controller *c)
{
	ms__admission_stats st;

	ms__admission_stats_get(c->a, &st);
	return st.window;
}

/* One evaluation period (1 s) at `rate` bytes per second. */
static unsigned second_at(controller *c, uint64_t rate)
{
	fake_now += 1.0;
	c->bytes += rate;
	ms__admission_tick(c->a, c->bytes, c->throttles);
	return window(c);
}

Test(admission, slow_start_doubles_then_settles_then_grows_by_one)
{
	controller c = open_controller(64, true);

	cr_assert_eq(window(&c), 4, "starts at 4");
	cr_assert_eq(second_at(&c, 100), 8);
	cr_assert_eq(second_at(&c, 200), 16);
	cr_assert_eq(second_at(&c, 205), 12, "a doubling that bought < 10%% settles at 3/4");
	cr_assert_eq(second_at(&c, 300), 13, "then +1 while throughput grows >= 5%%");
	cr_assert_eq(second_at(&c, 400), 14);
	ms__admission_close(c.a);
}

Test(admission, a_plateau_gives_one_back_but_not_below_the_start)
{
	controller c = open_controller(64, true);

	second_at(&c, 100); /* 8 */
	second_at(&c, 101); /* 6: slow start ends */
	cr_assert_eq(window(&c), 6);
	for (int i = 0; i < 3; i++)
		second_at(&c, 101);
	cr_assert_eq(window(&c), 5, "three flat periods give one back");
	for (int i = 0; i < 3; i++)
		second_at(&c, 101);
	cr_assert_eq(window(&c), 4);
	for (int i = 0; i < 9; i++)
		second_at(&c, 101);
	cr_assert_eq(window(&c), 4, "a plateau never goes below the starting window");
	ms__admission_close(c.a);
}

Test(admission, congestion_halves_at_once_and_holds)
{
	controller c = open_controller(64, true);
	ms__admission_stats st;

	second_at(&c, 100); /* 8 */
	second_at(&c, 200); /* 16 */
	c.throttles = 1;
	fake_now += 0.1;
	ms__admission_tick(c.a, c.bytes, c.throttles);
	cr_assert_eq(window(&c), 8, "a SlowDown halves the window at once");
	c.throttles = 2;
	fake_now += 0.1;
	ms__admission_tick(c.a, c.bytes, c.throttles);
	cr_assert_eq(window(&c), 8, "a second signal within the 2 s hold cuts nothing more");
	cr_assert_eq(second_at(&c, 1000), 8, "no growth during the hold");
	fake_now += 2.0;
	c.throttles = 3;
	ms__admission_tick(c.a, c.bytes, c.throttles);
	cr_assert_eq(window(&c), 4, "after the hold, congestion halves again");
	for (int i = 0; i < 6; i++) {
		c.throttles++;
		fake_now += 2.5;
		ms__admission_tick(c.a, c.bytes, c.throttles);
	}
	cr_assert_eq(window(&c), 1, "halving stops at one read, below the starting window");
	ms__admission_stats_get(c.a, &st);
	cr_assert_eq(st.throttles, 9);
	cr_assert_eq(st.window_cuts, 8);
	ms__admission_close(c.a);
}

Test(admission, the_window_stays_within_max_and_fixed_is_max)
{
	controller c = open_controller(6, true);

	cr_assert_eq(window(&c), 4);
	cr_assert_eq(second_at(&c, 100), 6, "doubling is capped at the fetch's concurrency");
	cr_assert_eq(second_at(&c, 1000), 6);
	ms__admission_close(c.a);
	c = open_controller(3, true);
	cr_assert_eq(window(&c), 3, "a concurrency under 4 starts at itself");
	ms__admission_close(c.a);
	c = open_controller(16, false);
	cr_assert_eq(window(&c), 16);
	c.throttles = 5;
	cr_assert_eq(second_at(&c, 1), 16, "--fixed-concurrency ignores congestion");
	ms__admission_close(c.a);
}

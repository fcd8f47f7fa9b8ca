/*
 * admission.c - node-wide slots and rate, and a fetch's adaptive window. See admission.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "admission.h"
#include "alloc.h"
#include "error.h"

#define SLOT_POLL_US    10000
#define EVAL_SECONDS    1.0
#define HOLD_SECONDS    2.0
#define GAIN_SLOW_START 1.10 /* doubling continues while throughput grows 10% */
#define GAIN_AVOIDANCE  1.05 /* +1 continues while throughput grows 5% */
#define PLATEAU_STEPS   3
#define BURST_SECONDS   0.25 /* the rate bucket holds a quarter second of bytes */

typedef struct {
	int64_t last_ns;
	double tokens;
} rate_state;

struct ms__admission {
	ms__admission_options o;
	char slots_path[PATH_MAX];
	int rate_fd;
	pthread_mutex_t rate_lock; /* flock is per open file: threads also need a mutex */
	/* Per token: its own open file description (OFD locks on one description do not
	 * exclude each other) and the slot it holds, -1 for none. */
	int worker_fd[MS__ADMISSION_WORKERS_MAX];
	int worker_slot[MS__ADMISSION_WORKERS_MAX];
	unsigned seed;

	pthread_mutex_t lock; /* guards window, stop and the controller below */
	pthread_cond_t cond;
	unsigned window;
	unsigned initial; /* the window it started with: plateaus do not go below it */
	bool stop;
	double last_eval, hold_until, best_rate;
	uint64_t last_bytes;
	unsigned last_throttles, plateau;
	bool slow_start;

	atomic_ullong slot_waits, rate_waits, throttles, cuts;
	atomic_uint in_flight;
	bool admitted[MS__ADMISSION_WORKERS_MAX]; /* token i is taken (guarded by lock) */
};

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Now, by the options' clock. */
static double clock_now(const ms__admission *a)
{
	return a->o.clock != NULL ? a->o.clock(a->o.clock_payload) : now_seconds();
}

int ms__admission_open(ms__admission **out, const char *dir, const ms__admission_options *o)
{
	char rate_path[PATH_MAX];
	ms__admission *a;

	*out = NULL;
	a = ms__calloc(1, sizeof(*a));
	if (a == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", dir);
	a->o = *o;
	if (a->o.max_window == 0 || a->o.max_window > MS__ADMISSION_WORKERS_MAX)
		a->o.max_window = a->o.max_window == 0 ? 1 : MS__ADMISSION_WORKERS_MAX;
	a->window =
	    !a->o.adaptive ? a->o.max_window
	    : a->o.initial_window > 0
	        ? (a->o.initial_window < a->o.max_window ? a->o.initial_window : a->o.max_window)
	        : (a->o.max_window < 4 ? a->o.max_window : 4);
	a->initial = a->window;
	a->slow_start = true;
	a->last_eval = clock_now(a);
	a->seed = (unsigned)getpid() ^ (unsigned)(uintptr_t)a;
	a->rate_fd = -1;
	for (unsigned i = 0; i < MS__ADMISSION_WORKERS_MAX; i++) {
		a->worker_fd[i] = -1;
		a->worker_slot[i] = -1;
	}
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->rate_lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	snprintf(a->slots_path, sizeof(a->slots_path), "%s/.admission-slots", dir);
	if (a->o.max_bytes_per_second > 0) {
		snprintf(rate_path, sizeof(rate_path), "%s/.admission-rate", dir);
		a->rate_fd = open(rate_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (a->rate_fd < 0) {
			int rc = ms__error_errno(errno, "%s", rate_path);

			ms__admission_close(a);
			return rc;
		}
	}
	*out = a;
	return 0;
}

/* Takes one of the node's slots for `worker`: an OFD write lock on one byte of the file. */
static int take_slot(ms__admission *a, unsigned token)
{
	bool waited = false;
	int fd = a->worker_fd[token];

	if (fd < 0) {
		/* One open file description per worker: OFD locks on one description do not
		 * exclude each other, on two they do, even within a process. */
		fd = open(a->slots_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			return ms__error_errno(errno, "%s", a->slots_path);
		a->worker_fd[token] = fd;
	}
	for (;;) {
		unsigned start = (unsigned)rand_r(&a->seed) % a->o.max_connections;

		for (unsigned j = 0; j < a->o.max_connections; j++) {
			struct flock fl = {0};

			fl.l_type = F_WRLCK;
			fl.l_whence = SEEK_SET;
			fl.l_start = (off_t)((start + j) % a->o.max_connections);
			fl.l_len = 1;
			if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
				a->worker_slot[token] = (int)fl.l_start;
				return 0;
			}
			if (errno != EAGAIN && errno != EACCES && errno != EINTR)
				return ms__error_errno(errno, "%s: lock", a->slots_path);
		}
		if (!waited)
			atomic_fetch_add(&a->slot_waits, 1);
		waited = true;
		pthread_mutex_lock(&a->lock);
		if (a->stop) {
			pthread_mutex_unlock(&a->lock);
			return ms__error_set(MS_ECANCELED,
			                     "canceled while waiting for a node-wide slot");
		}
		pthread_mutex_unlock(&a->lock);
		usleep(SLOT_POLL_US);
	}
}

/* Takes `bytes` from the node's token bucket, sleeping off any debt. */
static int take_rate(ms__admission *a, uint64_t bytes)
{
	rate_state st = {0};
	double rate = (double)a->o.max_bytes_per_second, wait = 0;
	struct timespec ts;
	int64_t now;
	int rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	pthread_mutex_lock(&a->rate_lock);
	if (flock(a->rate_fd, LOCK_EX) != 0) {
		rc = ms__error_errno(errno, "the node's rate budget: lock");
		pthread_mutex_unlock(&a->rate_lock);
		return rc;
	}
	if (pread(a->rate_fd, &st, sizeof(st), 0) != (ssize_t)sizeof(st) || st.last_ns <= 0 ||
	    st.last_ns > now) {
		st.last_ns = now;
		st.tokens = rate * BURST_SECONDS;
	}
	st.tokens += (double)(now - st.last_ns) / 1e9 * rate;
	if (st.tokens > rate * BURST_SECONDS)
		st.tokens = rate * BURST_SECONDS;
	st.last_ns = now;
	st.tokens -= (double)bytes; /* a reservation: the debt is slept off below */
	if (st.tokens < 0)
		wait = -st.tokens / rate;
	if (pwrite(a->rate_fd, &st, sizeof(st), 0) != (ssize_t)sizeof(st))
		rc = ms__error_errno(errno, "the node's rate budget: write");
	flock(a->rate_fd, LOCK_UN);
	pthread_mutex_unlock(&a->rate_lock);
	if (wait > 0) {
		atomic_fetch_add(&a->rate_waits, 1);
		usleep((useconds_t)(wait * 1e6));
	}
	return rc;
}

int ms__admission_enter(ms__admission *a, unsigned *token)
{
	unsigned t = 0;
	int rc;

	pthread_mutex_lock(&a->lock);
	while (atomic_load(&a->in_flight) >= a->window && !a->stop) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 100 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&a->cond, &a->lock, &until);
	}
	if (a->stop) {
		pthread_mutex_unlock(&a->lock);
		return ms__error_set(MS_ECANCELED, "canceled while waiting for admission");
	}
	/* The window is at most MS__ADMISSION_WORKERS_MAX, so a token is free. */
	while (t < MS__ADMISSION_WORKERS_MAX - 1 && a->admitted[t])
		t++;
	a->admitted[t] = true;
	atomic_fetch_add(&a->in_flight, 1);
	pthread_mutex_unlock(&a->lock);
	*token = t;
	if (a->o.max_connections > 0 && (rc = take_slot(a, t)) < 0) {
		ms__admission_leave(a, t);
		return rc;
	}
	return 0;
}

int ms__admission_pace(ms__admission *a, uint64_t bytes)
{
	return a->o.max_bytes_per_second > 0 ? take_rate(a, bytes) : 0;
}

void ms__admission_leave(ms__admission *a, unsigned token)
{
	struct flock fl = {0};

	if (token >= MS__ADMISSION_WORKERS_MAX)
		return;
	if (a->worker_slot[token] >= 0) {
		fl.l_type = F_UNLCK;
		fl.l_whence = SEEK_SET;
		fl.l_start = a->worker_slot[token];
		fl.l_len = 1;
		fcntl(a->worker_fd[token], F_OFD_SETLK, &fl);
		a->worker_slot[token] = -1;
	}
	pthread_mutex_lock(&a->lock);
	if (a->admitted[token]) {
		a->admitted[token] = false;
		atomic_fetch_sub(&a->in_flight, 1);
		pthread_cond_signal(&a->cond);
	}
	pthread_mutex_unlock(&a->lock);
}

static void set_window(ms__admission *a, unsigned w)
{
	if (w < 1)
		w = 1;
	if (w > a->o.max_window)
		w = a->o.max_window;
	if (w != a->window) {
		a->window = w;
		pthread_cond_broadcast(&a->cond);
	}
}

void ms__admission_tick(ms__admission *a, uint64_t bytes, unsigned throttles)
{
	double now = clock_now(a), dt, rate;

	pthread_mutex_lock(&a->lock);
	dt = now - a->last_eval;
	if (throttles != a->last_throttles) {
		/* Congestion: halve at once, then let the store recover before growing again. */
		atomic_fetch_add(&a->throttles, throttles - a->last_throttles);
		a->last_throttles = throttles;
		if (a->o.adaptive && now >= a->hold_until) {
			set_window(a, a->window / 2);
			atomic_fetch_add(&a->cuts, 1);
			a->slow_start = false;
			a->hold_until = now + HOLD_SECONDS;
			a->plateau = 0;
			a->best_rate = 0;
		}
	}
	if (!a->o.adaptive || dt < EVAL_SECONDS) {
		pthread_mutex_unlock(&a->lock);
		return;
	}
	rate = (double)(bytes - a->last_bytes) / dt;
	a->last_bytes = bytes;
	a->last_eval = now;
	if (now < a->hold_until) {
		a->best_rate = rate;
	} else if (a->slow_start) {
		if (rate > a->best_rate * GAIN_SLOW_START) {
			a->best_rate = rate;
			set_window(a, a->window * 2);
		} else {
			/* The last doubling bought nothing: settle between the two. */
			a->slow_start = false;
			set_window(a, a->window * 3 / 4);
		}
	} else if (rate > a->best_rate * GAIN_AVOIDANCE) {
		a->best_rate = rate;
		a->plateau = 0;
		set_window(a, a->window + 1);
	} else if (++a->plateau >= PLATEAU_STEPS) {
		/* More reads stopped adding throughput: give one back, and measure again, but not
		 * below the window it started with: only congestion signals go lower. A floor
		 * every node shares keeps nodes on one saturated link from drifting apart (one
		 * at 1 read, another at 8), which TCP would turn into unfair shares. */
		a->plateau = 0;
		a->best_rate = rate;
		if (a->window > a->initial)
			set_window(a, a->window - 1);
	}
	pthread_mutex_unlock(&a->lock);
}

void ms__admission_stats_get(const ms__admission *a, ms__admission_stats *out)
{
	ms__admission *m = (ms__admission *)a;

	pthread_mutex_lock(&m->lock);
	out->window = m->window;
	pthread_mutex_unlock(&m->lock);
	out->slot_waits = atomic_load(&m->slot_waits);
	out->rate_waits = atomic_load(&m->rate_waits);
	out->throttles = atomic_load(&m->throttles);
	out->window_cuts = atomic_load(&m->cuts);
	out->in_flight = atomic_load(&m->in_flight);
}

void ms__admission_stop(ms__admission *a)
{
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

void ms__admission_close(ms__admission *a)
{
	if (a == NULL)
		return;
	for (unsigned i = 0; i < MS__ADMISSION_WORKERS_MAX; i++) {
		if (a->worker_fd[i] >= 0)
			close(a->worker_fd[i]);
	}
	if (a->rate_fd >= 0)
		close(a->rate_fd);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->rate_lock);
	pthread_mutex_destroy(&a->lock);
	ms__free(a);
}

/*
 * stream.c - `modelstream stream PATH...`: streams tensors into host memory and reports
 * how fast, optionally with a SHA-256 per tensor.
 *
 * SIGINT and SIGTERM are blocked in every thread and taken by one thread with sigwait(),
 * which calls ms_streamer_cancel(): the library's one cross-thread call, used the way it
 * is meant to be. The main thread then sees MS_ECANCELED and exits with 130.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <openssl/evp.h>

#include "modelstream.h"

#include "cli.h"

static const char stream_usage[] =
    "Usage: modelstream stream PATH... [OPTIONS]\n"
    "\n"
    "Streams the tensors of the safetensors files PATH... into host memory or a GPU, in\n"
    "file order, and reports throughput and time to first tensor on stderr. A PATH may be a\n"
    "local file, an s3:// or gs:// object, or a model directory (a local directory or a\n"
    "prefix ending in '/'), whose *.safetensors files are streamed in name order.\n"
    "\n"
    "Options:\n"
    "  -c, --concurrency N     parallel reads, 1-256 (default 16)\n"
    "  -m, --memory-limit B    -1 unlimited (default), 0 the largest tensor, or bytes\n"
    "                          (suffixes K, M, G, T: 512M); a ring buffer of that size\n"
    "      --chunk-size B      size of one read (64K to 1G; default 8M, 16M when a PATH\n"
    "                          is in object storage)\n"
    "  -s, --select GLOB       stream only tensors whose name matches GLOB (repeatable;\n"
    "                          shell patterns: 'model.layers.1.*')\n"
    "      --direct-io MODE    auto (default: O_DIRECT for large uncached files), on, off\n"
    "      --deliver MODE      copy (default: into the arena), mapped (zero copy: read-only\n"
    "                          pointers into each file's pages; local files only), or\n"
    "                          auto (mapped for files on tmpfs or all in the page cache)\n"
    "      --cache DIR         share the node's admission budget for object storage\n"
    "                          with `fetch` and every process using the node cache DIR\n"
    "                          (MODELSTREAM_CACHE_DIR); nothing is written to the cache\n"
    "      --node-connections N  reads in flight against object storage for the whole\n"
    "                          node (default 64; needs --cache)\n"
    "      --node-rate B       bytes per second for the whole node (250M; needs --cache)\n"
    "      --patience S        with --cache: seconds to wait out a store that keeps\n"
    "                          answering SlowDown before failing (default 600)\n"
    "      --device DEV        cpu (default: host memory), or cuda:N: each tensor is\n"
    "                          copied into GPU N's memory through a pinned staging ring\n"
    "                          (the memory limit bounds it; by default 512M, or twice\n"
    "                          the largest tensor), or straight from the files' pages\n"
    "                          with --deliver mapped/auto; needs the NVIDIA driver\n"
    "                          (libcuda.so.1)\n"
    "      --checksum          print '<sha256>  <name>' for every tensor on stdout (from a\n"
    "                          GPU: of the bytes copied back from it)\n"
    "      --json              print a JSON summary on stdout instead of the text one\n"
    "  -q, --quiet             no summary\n"
    "  -v, --verbose           first say how each PATH is reached: endpoint, region,\n"
    "                          addressing and credential source, and why (no secrets);\n"
    "                          with --device, why a copy path is slower than it could be\n"
    "  -h, --help              show this help\n"
    "\n"
    "Environment (flags win): RUNAI_STREAMER_CONCURRENCY, RUNAI_STREAMER_MEMORY_LIMIT,\n"
    "RUNAI_STREAMER_CHUNK_BYTESIZE, and MODELSTREAM_CONCURRENCY, MODELSTREAM_MEMORY_LIMIT,\n"
    "MODELSTREAM_CHUNK_SIZE, which win over the RUNAI_ ones.\n"
    "\n";

typedef struct {
	ms_streamer *streamer;
	sigset_t signals;
	int signal; /* the signal that asked us to stop, 0 if none; read after join */
} signal_watch;

static void *watch_signals(void *arg)
{
	signal_watch *w = arg;
	int sig = 0;

	if (sigwait(&w->signals, &sig) == 0 && sig != SIGUSR1) {
		w->signal = sig;
		ms_streamer_cancel(w->streamer);
	}
	return NULL;
}

static const char *page_kind(int pages)
{
	switch (pages) {
	case 2:
		return "reserved huge pages";
	case 1:
		return "transparent huge pages";
	default:
		return "small pages";
	}
}

static uint64_t peak_rss_bytes(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_maxrss * 1024 : 0;
}

/* Page faults so far: on our VMs, faulting fresh memory is what bounds a load. */
static uint64_t page_faults(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)(ru.ru_minflt + ru.ru_majflt) : 0;
}

static const char *device_copy_name(ms_device_copy how)
{
	switch (how) {
	case MS_DEVICE_COPY_STAGED:
		return "staged";
	case MS_DEVICE_COPY_MAPPED:
		return "mapped";
	case MS_DEVICE_COPY_PAGEABLE:
		return "pageable";
	default:
		return "none";
	}
}

static void print_summary(const ms_stats *st, const ms_streamer_options *o, size_t files,
                          uint64_t faults, int json, int mapped)
{
	double seconds = (double)st->elapsed_ns / 1e9;
	double gbps = seconds > 0 ? (double)st->bytes_delivered / 1e9 / seconds : 0;
	char a[32], b[32], c[32], device[32] = "cpu", where[160];

	if (st->device != MS_DEVICE_CPU)
		snprintf(device, sizeof(device), "cuda:%d", st->device);
	if (json) {
		printf("{\"bytes\":%llu,\"seconds\":%.6f,\"gbps\":%.3f,\"ttft_seconds\":%.6f,"
		       "\"tensors\":%llu,\"files\":%zu,\"read_requests\":%llu,"
		       "\"bytes_read\":%llu,\"arena_bytes\":%llu,\"arena_huge_pages\":%d,"
		       "\"arena_pages\":\"%s\",\"page_faults\":%llu,"
		       "\"concurrency\":%u,\"memory_limit\":%lld,\"chunk_size\":%zu,"
		       "\"delivery\":\"%s\",\"device\":\"%s\",\"device_copy\":\"%s\","
		       "\"bytes_to_device\":%llu,\"pin_seconds\":%.6f,\"peak_rss_bytes\":%llu}\n",
		       (unsigned long long)st->bytes_delivered, seconds, gbps,
		       (double)st->time_to_first_tensor_ns / 1e9,
		       (unsigned long long)st->tensors_delivered, files,
		       (unsigned long long)st->read_requests, (unsigned long long)st->bytes_read,
		       (unsigned long long)st->arena_bytes, st->arena_huge_pages,
		       page_kind(st->arena_huge_pages), (unsigned long long)faults, o->concurrency,
		       (long long)o->memory_limit, o->chunk_size, mapped ? "mapped" : "copy",
		       device, device_copy_name(st->device_copy),
		       (unsigned long long)st->bytes_to_device, (double)st->pin_ns / 1e9,
		       (unsigned long long)peak_rss_bytes());
		return;
	}
	cli_format_bytes(b, sizeof(b), st->arena_bytes);
	if (st->device_copy == MS_DEVICE_COPY_MAPPED)
		snprintf(where, sizeof(where),
		         "to %s straight from the files' pages (registered with the driver), %u "
		         "copy streams",
		         device, st->copy_streams);
	else if (st->device != MS_DEVICE_CPU)
		snprintf(where, sizeof(where),
		         "to %s through a %s %s staging ring on %s, %u copy streams", device,
		         st->device_copy == MS_DEVICE_COPY_STAGED ? "pinned" : "pageable", b,
		         page_kind(st->arena_huge_pages), st->copy_streams);
	else if (mapped)
		snprintf(where, sizeof(where),
		         "arena none (mapped: zero copy from the files' pages)");
	else
		snprintf(where, sizeof(where), "arena %s on %s", b,
		         page_kind(st->arena_huge_pages));
	fprintf(stderr,
	        "streamed %llu tensors, %s from %zu file%s in %.3f s: %.2f GB/s; first tensor "
	        "after %.1f ms; %llu reads; %s; %llu page faults; peak RSS %s\n",
	        (unsigned long long)st->tensors_delivered,
	        cli_format_bytes(a, sizeof(a), st->bytes_delivered), files, files == 1 ? "" : "s",
	        seconds, gbps, (double)st->time_to_first_tensor_ns / 1e6,
	        (unsigned long long)st->read_requests, where, (unsigned long long)faults,
	        cli_format_bytes(c, sizeof(c), peak_rss_bytes()));
}

static int needs_escape(const char *name)
{
	for (; *name != '\0'; name++)
		if ((unsigned char)*name < 0x20 || *name == 0x7f || *name == '\\')
			return 1;
	return 0;
}

static int print_checksum(EVP_MD_CTX *md, const ms_tensor *t, const void *data)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 1];

	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, data, (size_t)t->size) != 1 ||
	    EVP_DigestFinal_ex(md, digest, &len) != 1) {
		fprintf(stderr, "modelstream: %s: SHA-256 failed\n", t->name);
		return -1;
	}
	for (unsigned i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	/* As sha256sum does: a name with a backslash or a control character gets a leading
	 * backslash and those characters escaped (\\, \n, \r, and \xNN for the rest), so
	 * that every line stays one line and no terminal escape reaches the screen. */
	if (!needs_escape(t->name)) {
		printf("%s  %s\n", hex, t->name);
		return 0;
	}
	printf("\\%s  ", hex);
	for (const char *p = t->name; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '\\')
			fputs("\\\\", stdout);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\r')
			fputs("\\r", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	putchar('\n');
	return 0;
}

typedef struct {
	ms_streamer_options opts;
	const char **select;
	size_t select_count;
	int checksum;
	int json;
	int quiet;
	int verbose;
	unsigned char *back; /* --checksum of device tensors: the bytes copied back */
	size_t back_size;
} stream_args;

static int parse_args(stream_args *a, int argc, char **argv)
{
	static const struct option options[] = {
	    {"concurrency", required_argument, NULL, 'c'},
	    {"memory-limit", required_argument, NULL, 'm'},
	    {"chunk-size", required_argument, NULL, 'k'},
	    {"select", required_argument, NULL, 's'},
	    {"direct-io", required_argument, NULL, 'd'},
	    {"arena-pages", required_argument, NULL, 'p'},
	    {"deliver", required_argument, NULL, 'D'},
	    {"cache", required_argument, NULL, 'C'},
	    {"node-connections", required_argument, NULL, 'N'},
	    {"node-rate", required_argument, NULL, 'R'},
	    {"patience", required_argument, NULL, 'P'},
	    {"device", required_argument, NULL, 'G'},
	    {"checksum", no_argument, NULL, 'x'},
	    {"json", no_argument, NULL, 'j'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int64_t size;
	int c;

	if (ms_streamer_options_from_env(&a->opts) < 0)
		return cli_usage_error("%s", ms_error_last()->message);
	optind = 1;
	opterr = 0; /* our own one-line messages instead of getopt's */
	while ((c = getopt_long(argc, argv, "c:m:s:qvh", options, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (cli_parse_uint(&a->opts.concurrency, optarg, 1, 256) != 0)
				return cli_usage_error("--concurrency %s: expected 1 to 256",
				                       optarg);
			break;
		case 'm':
			if (cli_parse_size(&size, optarg) != 0)
				return cli_usage_error(
				    "--memory-limit %s: expected -1, 0 or a size "
				    "such as 512M",
				    optarg);
			a->opts.memory_limit = size;
			break;
		case 'k':
			if (cli_parse_size(&size, optarg) != 0 || size <= 0)
				return cli_usage_error(
				    "--chunk-size %s: expected a size such as 8M", optarg);
			a->opts.chunk_size = (size_t)size;
			break;
		case 's':
			a->select[a->select_count++] = optarg;
			break;
		case 'd':
			if (strcmp(optarg, "auto") == 0)
				a->opts.direct_io = MS_DIRECT_IO_AUTO;
			else if (strcmp(optarg, "on") == 0)
				a->opts.direct_io = MS_DIRECT_IO_ON;
			else if (strcmp(optarg, "off") == 0)
				a->opts.direct_io = MS_DIRECT_IO_OFF;
			else
				return cli_usage_error("--direct-io %s: expected auto, on or off",
				                       optarg);
			break;
		case 'D':
			if (strcmp(optarg, "copy") == 0)
				a->opts.deliver = MS_DELIVER_COPY;
			else if (strcmp(optarg, "mapped") == 0)
				a->opts.deliver = MS_DELIVER_MAPPED;
			else if (strcmp(optarg, "auto") == 0)
				a->opts.deliver = MS_DELIVER_AUTO;
			else
				return cli_usage_error(
				    "--deliver %s: expected copy, mapped or auto", optarg);
			break;
		case 'p':
			if (strcmp(optarg, "auto") == 0)
				a->opts.arena_pages = MS_ARENA_PAGES_AUTO;
			else if (strcmp(optarg, "small") == 0)
				a->opts.arena_pages = MS_ARENA_PAGES_SMALL;
			else if (strcmp(optarg, "transparent") == 0)
				a->opts.arena_pages = MS_ARENA_PAGES_TRANSPARENT;
			else if (strcmp(optarg, "reserved") == 0)
				a->opts.arena_pages = MS_ARENA_PAGES_RESERVED;
			else
				return cli_usage_error("--arena-pages %s: expected auto, small, "
				                       "transparent or reserved",
				                       optarg);
			break;
		case 'C':
			a->opts.node_dir = optarg;
			break;
		case 'N':
			if (cli_parse_uint(&a->opts.node_connections, optarg, 1, 4096) != 0)
				return cli_usage_error(
				    "--node-connections must be 1-4096, not '%s'", optarg);
			break;
		case 'R':
			if (cli_parse_size(&size, optarg) != 0 || size < 1)
				return cli_usage_error("--node-rate must be bytes per second like "
				                       "250M, not '%s'",
				                       optarg);
			a->opts.node_bytes_per_second = (uint64_t)size;
			break;
		case 'P':
			if (cli_parse_uint(&a->opts.patience_seconds, optarg, 1, 86400) != 0)
				return cli_usage_error(
				    "--patience must be 1-86400 seconds, not '%s'", optarg);
			break;
		case 'G':
			if (ms_device_parse(&a->opts.device, optarg) < 0)
				return cli_usage_error("--device %s: expected cpu, cuda or cuda:N",
				                       optarg);
			break;
		case 'x':
			a->checksum = 1;
			break;
		case 'j':
			a->json = 1;
			break;
		case 'q':
			a->quiet = 1;
			break;
		case 'v':
			a->verbose = 1;
			break;
		case 'h':
			fputs(stream_usage, stdout);
			fputs(cli_exit_codes_help, stdout);
			return -1;
		default:
			return cli_option_error("stream", optopt, argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return cli_usage_error("stream needs at least one PATH (see 'modelstream stream "
		                       "--help')");
	if (a->opts.node_dir == NULL && getenv("MODELSTREAM_CACHE_DIR") != NULL &&
	    getenv("MODELSTREAM_CACHE_DIR")[0] != '\0')
		a->opts.node_dir = getenv("MODELSTREAM_CACHE_DIR");
	if (a->opts.node_dir == NULL &&
	    (a->opts.node_connections > 0 || a->opts.node_bytes_per_second > 0 ||
	     a->opts.patience_seconds > 0))
		return cli_usage_error("--node-connections, --node-rate and --patience need "
		                       "--cache DIR: the node cache whose budget is shared");
	a->opts.select = a->select;
	a->opts.select_count = a->select_count;
	return 0;
}

/* --checksum of one tensor; a device tensor's bytes are copied back first. */
static int checksum_tensor(stream_args *a, EVP_MD_CTX *md, const ms_tensor *t)
{
	if (t->device == MS_DEVICE_CPU)
		return print_checksum(md, t, t->data);
	if (t->size > a->back_size) {
		unsigned char *grown = realloc(a->back, (size_t)t->size);

		if (grown == NULL) {
			fprintf(stderr, "modelstream: %s: out of memory copying %llu bytes back\n",
			        t->name, (unsigned long long)t->size);
			return -1;
		}
		a->back = grown;
		a->back_size = (size_t)t->size;
	}
	if (ms_tensor_copy(a->back, a->back_size, t) < 0) {
		fprintf(stderr, "modelstream: %s\n", ms_error_last()->message);
		return -1;
	}
	return print_checksum(md, t, a->back);
}

int cmd_stream(int argc, char **argv)
{
	stream_args a = {.opts = MS_STREAMER_OPTIONS_INIT};
	signal_watch watch = {0};
	pthread_t watcher;
	int watching = 0;
	EVP_MD_CTX *md = NULL;
	const ms_tensor *t;
	uint64_t faults = 0;
	ms_stats st = MS_STATS_INIT;
	int rc;

	/* At most one pattern per argument: the array cannot overflow. */
	a.select = calloc((size_t)argc, sizeof(*a.select));
	if (a.select == NULL)
		return cli_usage_error("out of memory");
	rc = parse_args(&a, argc, argv);
	if (rc != 0) {
		free(a.select);
		return rc < 0 ? EXIT_OK : rc;
	}
	if (a.checksum && (md = EVP_MD_CTX_new()) == NULL) {
		rc = cli_usage_error("out of memory");
		goto done;
	}
	if ((rc = ms_streamer_new(&watch.streamer, &a.opts)) < 0) {
		rc = cli_fail(rc);
		goto done;
	}
	sigemptyset(&watch.signals);
	sigaddset(&watch.signals, SIGINT);
	sigaddset(&watch.signals, SIGTERM);
	sigaddset(&watch.signals, SIGUSR1);
	/* Blocked before any worker starts, so that they inherit the mask, and before the
	 * headers are read, so that an interrupt there also ends in a clean cancel. */
	pthread_sigmask(SIG_BLOCK, &watch.signals, NULL);
	watching = pthread_create(&watcher, NULL, watch_signals, &watch) == 0;
	for (int i = optind; a.verbose && i < argc; i++) {
		char text[4096];

		ms_storage_explain(text, sizeof(text), argv[i]);
		fputs(text, stderr);
	}
	if ((rc = ms_streamer_add_many(watch.streamer, (const char *const *)argv + optind,
	                               (size_t)(argc - optind))) < 0) {
		rc = cli_fail(rc);
		goto done;
	}

	faults = page_faults();
	while ((rc = ms_streamer_next(&t, watch.streamer)) == 0) {
		if (a.checksum && checksum_tensor(&a, md, t) != 0) {
			rc = EXIT_FAILURE_OTHER;
			goto done;
		}
		ms_tensor_release(watch.streamer, t);
	}
	if (rc != MS_ITER_END) {
		rc = cli_fail(rc);
		goto done;
	}
	rc = EXIT_OK;
	ms_streamer_stats(&st, watch.streamer);
	if (a.select_count > 0 && st.tensors_total == 0) {
		/* Most likely a typo in a pattern: say so rather than report success. */
		rc = cli_usage_error("--select matched no tensor in %zu file%s (patterns are "
		                     "shell globs on full names, such as 'model.layers.0.*')",
		                     ms_streamer_file_count(watch.streamer),
		                     ms_streamer_file_count(watch.streamer) == 1 ? "" : "s");
		goto done;
	}
	/* The options as the streamer resolved them (16 MiB reads for object storage, the
	 * delivery auto chose), for the summary. */
	a.opts.concurrency = st.concurrency;
	a.opts.chunk_size = (size_t)st.chunk_size;
	/* The checksums (stdout) come before the summary (stderr) when both share a pipe. */
	fflush(stdout);
	if (a.verbose && ms_streamer_fallback(watch.streamer) != NULL)
		fprintf(stderr, "modelstream: %s\n", ms_streamer_fallback(watch.streamer));
	if (!a.quiet)
		print_summary(&st, &a.opts, ms_streamer_file_count(watch.streamer),
		              page_faults() - faults, a.json, st.delivery == MS_DELIVER_MAPPED);
done:
	if (watching) {
		pthread_kill(watcher, SIGUSR1);
		pthread_join(watcher, NULL);
		if (watch.signal != 0)
			rc = EXIT_CANCELED;
	}
	fflush(stdout);
	ms_streamer_free(watch.streamer);
	EVP_MD_CTX_free(md);
	free(a.select);
	free(a.back);
	return rc;
}

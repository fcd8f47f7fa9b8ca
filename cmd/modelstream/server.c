/*
 * server.c - the health, progress and metrics server (see server.h) on libwebsockets.
 *
 * Design: one lws context with one vhost and one protocol, serviced by the server's own
 * thread; every callback runs there. The documents come from the status store, rendered per
 * request under its lock. Websocket pushes have two triggers: a one-second lws timer, and
 * the store's change listener, which (from a fetch thread) calls lws_cancel_service(), the
 * one lws call that is safe from another thread; the service thread then compares the
 * store's generation with the last one it pushed. Stopping is the same wake-up with a flag
 * set: the loop ends, the owner joins the thread and destroys the context.
 *
 * Limits are enforced where lws lets us see them: the header pool's size caps request
 * headers (a longer request is refused by lws), the connection count is kept from
 * LWS_CALLBACK_WSI_CREATE / _DESTROY and checked when a connection is accepted, and a
 * timeout set when a connection is created closes one whose request never completes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "alloc.h"

#include "server.h"

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_TYPE    "text/plain; charset=utf-8"
#define JSON_TYPE    "application/json"

struct server {
	/* Set by server_start() before the thread starts; read-only afterwards. */
	status *status;
	struct lws_context *context;
	struct lws_vhost *vhost;
	int port;
	unsigned max_connections;
	unsigned header_timeout_s;
	unsigned push_interval_ms;
	pthread_t thread;
	bool thread_started;

	/* Release/acquire: server_stop() sets it and wakes the loop, which must see it. */
	atomic_bool stopping;

	/* Owned by the service thread. */
	unsigned open_connections;
	uint64_t pushed_generation;
	uint64_t push_round; /* grows at each tick and each change: one push per round */
	lws_sorted_usec_list_t tick;
};

/* Per connection, allocated and zeroed by lws. */
typedef struct {
	unsigned char *response; /* LWS_PRE bytes of headroom, then the body; NULL when none */
	size_t response_len;
	bool websocket;
	uint64_t pushed_round; /* the last server push_round this websocket was sent */
} session;

static const struct lws_protocols protocols[2];

/* ---------------------------------------------------------------------------------------
 * Addresses */

int server_parse_listen(char *host, size_t host_size, int *port, const char *listen)
{
	const char *colon;
	const char *host_start = listen;
	size_t host_len;
	char *end;
	long value;

	if (listen == NULL || host_size == 0)
		return -1;
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		host_start = listen + 1;
		host_len = (size_t)(close - host_start);
		colon = close + 1;
	} else {
		colon = strrchr(listen, ':');
		if (colon == NULL || memchr(listen, ':', (size_t)(colon - listen)) != NULL)
			return -1; /* no port, or an IPv6 address without brackets */
		host_len = (size_t)(colon - listen);
	}
	if (host_len >= host_size || colon[1] < '0' || colon[1] > '9')
		return -1;
	errno = 0;
	value = strtol(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || value < 0 || value > 65535)
		return -1;
	memcpy(host, host_start, host_len);
	host[host_len] = '\0';
	*port = (int)value;
	return 0;
}

/* Why binding `host`:`port` fails, found by trying it: lws does not say. */
static const char *bind_error(const char *host, int port, bool ipv6)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int fd;
	int one = 1;
	const char *why = "cannot listen";

	if (ipv6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (host[0] != '\0' && inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return why;
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return why;
		len = sizeof(*a);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return strerror(errno);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1) != 0)
		why = strerror(errno);
	close(fd);
	return why;
}

/* ---------------------------------------------------------------------------------------
 * Responses */

static void session_drop_response(session *ss)
{
	ms__free(ss->response);
	ss->response = NULL;
	ss->response_len = 0;
}

/*
 * Sends the headers of a response now and queues its body (`text`, taken over; NULL means
 * the renderer ran out of memory, answered 500) for the next writable callback.
 */
static int respond(struct lws *wsi, session *ss, unsigned code, const char *type, char *text,
                   bool head)
{
	unsigned char headers[LWS_PRE + 512];
	unsigned char *start = headers + LWS_PRE;
	unsigned char *p = start;
	unsigned char *end = headers + sizeof(headers) - 1;
	size_t len;

	if (text == NULL) {
		code = 500;
		type = TEXT_TYPE;
		text = ms__strdup("out of memory\n");
		if (text == NULL)
			return -1;
	}
	len = strlen(text);
	session_drop_response(ss);
	ss->response = ms__malloc(LWS_PRE + len);
	if (ss->response == NULL) {
		ms__free(text);
		return -1;
	}
	memcpy(ss->response + LWS_PRE, text, len);
	ss->response_len = len;
	ms__free(text);

	if (lws_add_http_common_headers(wsi, code, type, len, &p, end) != 0 ||
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
	                                (const unsigned char *)"no-store", 8, &p, end) != 0 ||
	    (code == 405 &&
	     lws_add_http_header_by_name(wsi, (const unsigned char *)"allow:",
	                                 (const unsigned char *)"GET, HEAD", 9, &p, end) != 0) ||
	    lws_finalize_write_http_header(wsi, start, &p, end) != 0)
		return -1;
	if (head || len == 0) {
		session_drop_response(ss);
		return lws_http_transaction_completed(wsi) != 0 ? -1 : 0;
	}
	lws_callback_on_writable(wsi);
	return 0;
}

static char *copy_text(const char *text)
{
	return ms__strdup(text);
}

static int serve_http(server *srv, struct lws *wsi, session *ss, const char *path)
{
	char *uri = NULL;
	int uri_len = 0;
	int method = lws_http_get_uri_and_method(wsi, &uri, &uri_len);
	bool head = method == LWSHUMETH_HEAD;
	char *body = NULL;
	int code;

	if (method != LWSHUMETH_GET && !head)
		return respond(wsi, ss, 405, TEXT_TYPE, copy_text("method not allowed\n"), false);
	if (strcmp(path, "/healthz") == 0) {
		code = status_render_healthz(srv->status, &body);
		return respond(wsi, ss, (unsigned)code, TEXT_TYPE, body, head);
	}
	if (strcmp(path, "/readyz") == 0) {
		code = status_render_readyz(srv->status, &body);
		return respond(wsi, ss, (unsigned)code, TEXT_TYPE, body, head);
	}
	if (strcmp(path, "/progress") == 0)
		return respond(wsi, ss, 200, JSON_TYPE, status_render_progress(srv->status), head);
	if (strcmp(path, "/metrics") == 0)
		return respond(wsi, ss, 200, METRICS_TYPE, status_render_metrics(srv->status),
		               head);
	return respond(wsi, ss, 404, TEXT_TYPE, copy_text("not found\n"), head);
}

static int write_response(struct lws *wsi, session *ss)
{
	int n;

	if (ss->response == NULL)
		return 0; /* a wake-up meant for websockets */
	n = lws_write(wsi, ss->response + LWS_PRE, ss->response_len, LWS_WRITE_HTTP_FINAL);
	session_drop_response(ss);
	if (n < 0)
		return -1;
	return lws_http_transaction_completed(wsi) != 0 ? -1 : 0;
}

static int push_progress(server *srv, struct lws *wsi)
{
	char *json = status_render_progress(srv->status);
	unsigned char *frame;
	size_t len;
	int n;

	if (json == NULL)
		return 0; /* out of memory now; the next tick tries again */
	len = strlen(json);
	frame = ms__malloc(LWS_PRE + len);
	if (frame == NULL) {
		ms__free(json);
		return 0;
	}
	memcpy(frame + LWS_PRE, json, len);
	ms__free(json);
	n = lws_write(wsi, frame + LWS_PRE, len, LWS_WRITE_TEXT);
	ms__free(frame);
	return n < (int)len ? -1 : 0;
}

/* Whether a websocket may open on this connection's path. */
static bool websocket_path(struct lws *wsi)
{
	char path[32];

	if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0)
		return false;
	return strcmp(path, "/ws") == 0 || strcmp(path, "/progress") == 0;
}

static void tick(lws_sorted_usec_list_t *sul)
{
	server *srv = lws_container_of(sul, server, tick);

	srv->push_round++;
	lws_callback_on_writable_all_protocol(srv->context, &protocols[0]);
	lws_sul_schedule(srv->context, 0, &srv->tick, tick,
	                 (lws_usec_t)srv->push_interval_ms * LWS_US_PER_MS);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
	struct lws_context *context = lws_get_context(wsi);
	server *srv = context != NULL ? lws_context_user(context) : NULL;
	session *ss = user;

	(void)len;
	if (srv == NULL)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
		/* Refused at once: no request could be served to it anyway. */
		return srv->open_connections >= srv->max_connections ? -1 : 0;
	case LWS_CALLBACK_WSI_CREATE:
		srv->open_connections++;
		/* Until its headers are complete; lws replaces it with its own timeouts
		 * once the request is being served. */
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE + 1,
		                (int)srv->header_timeout_s);
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		if (srv->open_connections > 0)
			srv->open_connections--;
		return 0;
	case LWS_CALLBACK_HTTP:
		lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
		return serve_http(srv, wsi, ss, in != NULL ? (const char *)in : "");
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return ss != NULL ? write_response(wsi, ss) : 0;
	case LWS_CALLBACK_HTTP_BODY:
		return -1; /* no endpoint takes a body */
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (ss != NULL)
			session_drop_response(ss);
		return 0;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return websocket_path(wsi) ? 0 : -1;
	case LWS_CALLBACK_ESTABLISHED:
		lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
		if (ss != NULL) {
			ss->websocket = true;
			ss->pushed_round = srv->push_round - 1; /* the first push at once */
		}
		lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		/* lws also calls this after it has flushed a frame that went out in parts:
		 * only a new round sends again. */
		if (ss == NULL || !ss->websocket || ss->pushed_round == srv->push_round)
			return 0;
		ss->pushed_round = srv->push_round;
		return push_progress(srv, wsi);
	case LWS_CALLBACK_RECEIVE:
		return 0; /* clients have nothing to say; pings are answered by lws */
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
		uint64_t generation = status_generation(srv->status);

		if (generation != srv->pushed_generation) {
			srv->pushed_generation = generation;
			srv->push_round++;
			lws_callback_on_writable_all_protocol(srv->context, &protocols[0]);
		}
		return 0;
	}
	default:
		return 0;
	}
}

static const struct lws_protocols protocols[2] = {
    {
        .name = "modelstream-progress",
        .callback = callback,
        .per_session_data_size = sizeof(session),
        .rx_buffer_size = 1024,
        .tx_packet_size = 64 * 1024,
    },
    {0},
};

/* ---------------------------------------------------------------------------------------
 * The thread */

/*
 * lws' log hook is process-wide and takes no payload, so its rate limit is process-wide
 * state too (the one exception to "no mutable statics", forced by the API): at most
 * LOG_BURST lines per LOG_WINDOW_S seconds, so that a client sending bad requests in a loop
 * cannot flood the pod's log. Relaxed atomics: the count is approximate by design.
 */
#define LOG_BURST    5
#define LOG_WINDOW_S 60
static atomic_llong log_window_start;
static atomic_int log_lines;
static atomic_int log_suppressed;

static void log_line(int level, const char *line)
{
	long long t = (long long)time(NULL);
	long long start = atomic_load_explicit(&log_window_start, memory_order_relaxed);
	size_t len = strlen(line);

	(void)level;
	if (t - start >= LOG_WINDOW_S) {
		int suppressed = atomic_exchange_explicit(&log_suppressed, 0, memory_order_relaxed);

		atomic_store_explicit(&log_window_start, t, memory_order_relaxed);
		atomic_store_explicit(&log_lines, 0, memory_order_relaxed);
		if (suppressed > 0)
			fprintf(stderr, "modelstream: http: %d more messages suppressed\n",
			        suppressed);
	}
	if (atomic_fetch_add_explicit(&log_lines, 1, memory_order_relaxed) >= LOG_BURST) {
		atomic_fetch_add_explicit(&log_suppressed, 1, memory_order_relaxed);
		return;
	}
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	fprintf(stderr, "modelstream: http: %.*s\n", (int)len, line);
}

/* The store's change listener; runs on a fetch thread with the store's lock held. */
static void status_changed(void *payload)
{
	server *srv = payload;

	lws_cancel_service(srv->context);
}

static void *run(void *payload)
{
	server *srv = payload;

	lws_sul_schedule(srv->context, 0, &srv->tick, tick,
	                 (lws_usec_t)srv->push_interval_ms * LWS_US_PER_MS);
	while (!atomic_load_explicit(&srv->stopping, memory_order_acquire))
		if (lws_service(srv->context, 0) < 0)
			break;
	lws_sul_schedule(srv->context, 0, &srv->tick, NULL, LWS_SET_TIMER_USEC_CANCEL);
	return NULL;
}

int server_start(server **out, const server_options *options, char *err, size_t err_size)
{
	struct lws_context_creation_info info;
	char host[64];
	int port = 0;
	bool ipv6;
	server *srv = NULL;
	int rc = -1;

	*out = NULL;
	if (server_parse_listen(host, sizeof(host), &port, options->listen) != 0) {
		snprintf(err, err_size, "'%s': the address must be HOST:PORT, [IPV6]:PORT or :PORT",
		         options->listen != NULL ? options->listen : "");
		return -1;
	}
	ipv6 = host[0] == '\0' || strchr(host, ':') != NULL;
	{
		unsigned char probe[sizeof(struct in6_addr)];

		if (host[0] != '\0' && inet_pton(ipv6 ? AF_INET6 : AF_INET, host, probe) != 1) {
			snprintf(err, err_size, "%s: the host must be an IP address",
			         options->listen);
			return -1;
		}
	}
	srv = ms__calloc(1, sizeof(*srv));
	if (srv == NULL) {
		snprintf(err, err_size, "%s: out of memory", options->listen);
		return -1;
	}
	srv->status = options->status;
	srv->max_connections =
	    options->max_connections != 0 ? options->max_connections : SERVER_MAX_CONNECTIONS;
	srv->header_timeout_s =
	    options->header_timeout_s != 0 ? options->header_timeout_s : SERVER_HEADER_TIMEOUT_S;
	srv->push_interval_ms =
	    options->push_interval_ms != 0 ? options->push_interval_ms : SERVER_PUSH_INTERVAL_MS;
	atomic_init(&srv->stopping, false);

	lws_set_log_level(LLL_ERR, log_line);
	memset(&info, 0, sizeof(info));
	info.port = port;
	/* lws binds an address given as the interface; none means every address. */
	info.iface = host[0] != '\0' && strcmp(host, "0.0.0.0") != 0 && strcmp(host, "::") != 0
	                 ? host
	                 : NULL;
	info.protocols = protocols;
	info.user = srv;
	info.options =
	    LWS_SERVER_OPTION_VALIDATE_UTF8 | (ipv6 ? 0 : LWS_SERVER_OPTION_DISABLE_IPV6);
	info.max_http_header_data = SERVER_HEADER_BYTES;
	info.max_http_header_pool = 0; /* one per connection, bounded by the connection cap */
	info.keepalive_timeout =
	    (int)(options->idle_timeout_s != 0 ? options->idle_timeout_s : SERVER_IDLE_TIMEOUT_S);
	info.timeout_secs = srv->header_timeout_s;
	/* Once a request's first byte has come, lws holds a header buffer for it: the whole
	 * request must arrive within this, however slowly it trickles (slowloris). */
	info.timeout_secs_ah_idle = srv->header_timeout_s;
	/* Room for the cap, the listen sockets and lws' own descriptors. */
	info.fd_limit_per_thread = srv->max_connections + 16;

	srv->context = lws_create_context(&info);
	if (srv->context == NULL) {
		snprintf(err, err_size, "%s: cannot listen (%s)", options->listen,
		         bind_error(host, port, ipv6));
		goto done;
	}
	srv->vhost = lws_get_vhost_by_name(srv->context, "default");
	srv->port = srv->vhost != NULL ? lws_get_vhost_listen_port(srv->vhost) : port;
	srv->pushed_generation = status_generation(srv->status);
	status_set_listener(srv->status, status_changed, srv);
	if (pthread_create(&srv->thread, NULL, run, srv) != 0) {
		status_set_listener(srv->status, NULL, NULL);
		snprintf(err, err_size, "%s: cannot start the server's thread", options->listen);
		goto done;
	}
	srv->thread_started = true;
	*out = srv;
	srv = NULL;
	rc = 0;
done:
	if (srv != NULL && srv->context != NULL)
		lws_context_destroy(srv->context);
	ms__free(srv);
	return rc;
}

int server_port(const server *s)
{
	return s->port;
}

void server_stop(server *s)
{
	if (s == NULL)
		return;
	status_set_listener(s->status, NULL, NULL);
	atomic_store_explicit(&s->stopping, true, memory_order_release);
	lws_cancel_service(s->context);
	if (s->thread_started)
		pthread_join(s->thread, NULL);
	lws_context_destroy(s->context);
	ms__free(s);
}

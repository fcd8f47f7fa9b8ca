/*
 * server.h - the health, progress and metrics HTTP server of `modelstream fetch` and
 * `serve` (libwebsockets), on a thread of its own.
 *
 * It answers, from a status store (status.h):
 *   GET /healthz    200 "ok", or 503 "stalled: ..." once a fetch has stalled
 *   GET /readyz     200 "ready" only when every model is ready, else 503 with the reason
 *   GET /progress   the JSON document of status.h (application/json)
 *   GET /metrics    Prometheus text, "text/plain; version=0.0.4; charset=utf-8"
 *   /ws             a websocket (also /progress with Upgrade) that pushes the /progress
 *                   document every second and at once after each change of state
 * HEAD is answered like GET without a body; other methods get 405, other paths 404.
 *
 * Limits: request headers over SERVER_HEADER_BYTES are refused; at most max_connections are
 * open at once (one more is closed as soon as it is accepted); a request whose headers are
 * not complete within header_timeout_s, or a connection idle between requests for
 * idle_timeout_s, is closed, so slow or idle clients cannot hold the server.
 *
 * Threads: server_start() and server_stop() are called from one thread (the owner); the
 * server's own thread does all the network work. The status store may be fed from any
 * thread while the server runs. server_port() may be called from any thread.
 */
#ifndef MS_CLI_SERVER_H
#define MS_CLI_SERVER_H

#include <stddef.h>

#include "status.h"

#define SERVER_HEADER_BYTES     4096
#define SERVER_MAX_CONNECTIONS  512
#define SERVER_HEADER_TIMEOUT_S 10
#define SERVER_IDLE_TIMEOUT_S   5
#define SERVER_PUSH_INTERVAL_MS 1000

typedef struct {
	/* "HOST:PORT": "0.0.0.0:9090", "127.0.0.1:0" (0: any free port), "[::]:9090",
	 * "[::1]:9090", ":9090" (every interface, IPv6 too where the host has it). */
	const char *listen;
	status *status;            /* not owned; must outlive the server */
	unsigned max_connections;  /* 0: SERVER_MAX_CONNECTIONS */
	unsigned header_timeout_s; /* 0: SERVER_HEADER_TIMEOUT_S */
	unsigned idle_timeout_s;   /* 0: SERVER_IDLE_TIMEOUT_S */
	unsigned push_interval_ms; /* 0: SERVER_PUSH_INTERVAL_MS */
} server_options;

typedef struct server server;

/**
 * Parses "HOST:PORT" into `host` (without brackets; empty for every interface) and *port.
 * Returns 0, or -1 for a malformed address (no port, a port over 65535, an unclosed '[').
 */
int server_parse_listen(char *host, size_t host_size, int *port, const char *listen);

/**
 * Binds, listens and starts the server's thread. On failure writes one line to `err` (the
 * address and why: "127.0.0.1:80: cannot listen (Permission denied)") and returns -1;
 * *out is then NULL. Sets libwebsockets' logging (process-wide) to errors only, each line
 * prefixed "modelstream: http: " on stderr.
 */
int server_start(server **out, const server_options *options, char *err, size_t err_size);

/** The port the server listens on (useful after asking for port 0). */
int server_port(const server *s);

/** Stops the server, joins its thread and frees it; accepts NULL. */
void server_stop(server *s);

#endif

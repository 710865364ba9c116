/* A small HTTP/1.1 server side for the API socket: a request parser that
 * works on a byte buffer (so it can be unit-tested and fuzzed without a
 * socket), a response writer, and a one-connection-at-a-time server over a
 * Unix socket driven by poll() from the caller's loop.
 *
 * Limits (like Firecracker's micro_http): the request line and headers fit
 * in HTTP_MAX_HEAD bytes, the body in HTTP_MAX_BODY bytes; only
 * Content-Length bodies (no chunked encoding). Anything malformed is
 * answered with 400 and the connection closed. */
#ifndef KITE_API_HTTP_H
#define KITE_API_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <poll.h>

#define HTTP_MAX_HEAD 8192
#define HTTP_MAX_BODY 51200   /* Firecracker's default API payload limit */
#define HTTP_MAX_PATH 1024

struct http_request {
	char method[16];
	char path[HTTP_MAX_PATH];   /* without the query string */
	const char *body;           /* points into the parse buffer; NUL-terminated copy not guaranteed */
	size_t body_len;
	bool keep_alive;            /* HTTP/1.1 default, Connection: close clears */
	bool has_body;              /* a Content-Length header was present */
	bool expect_continue;       /* Expect: 100-continue (set even when INCOMPLETE) */
	size_t head_len;            /* set once the head parsed (even when INCOMPLETE) */
};

enum http_parse_result {
	HTTP_PARSE_INCOMPLETE = 0,  /* need more bytes */
	HTTP_PARSE_OK = 1,          /* *consumed bytes form one request */
	HTTP_PARSE_BAD = -1,        /* malformed: answer 400, close */
	HTTP_PARSE_TOO_LARGE = -2,  /* over a limit: answer 400, close */
};

/* Parse one request from buf[0..len). On HTTP_PARSE_OK, *consumed is the
 * request's size (head + body) and req->body points into buf. On an error,
 * err (if not NULL) gets a short static reason. */
enum http_parse_result http_parse_request(const char *buf, size_t len, struct http_request *req,
					  size_t *consumed, const char **err);

/* Format a response into a malloc'ed buffer: status line, Server,
 * Content-Length, Content-Type (when body), Connection. *out_len is set.
 * Returns NULL on allocation failure. */
char *http_format_response(int status, const char *body, bool keep_alive, size_t *out_len);
const char *http_reason(int status);

/* The server: listens on a Unix socket, serves up to HTTP_MAX_CONNS
 * connections (requests are handled one at a time, in the caller's
 * thread); more clients wait in the listen backlog. */
#define HTTP_MAX_CONNS 16

struct http_response {
	int status;
	char *body;       /* malloc'ed or NULL (no body) */
};
typedef void (*http_handler_fn)(void *opaque, const struct http_request *req,
				struct http_response *resp);

struct http_conn {
	int fd;           /* -1: free slot */
	char *buf;        /* HTTP_MAX_HEAD + HTTP_MAX_BODY + 1 */
	size_t buf_len;
	bool continue_sent;  /* 100 Continue answered for the pending request */
};

struct http_server {
	int listen_fd;
	http_handler_fn handler;
	void *opaque;
	char *sock_path;
	struct http_conn conns[HTTP_MAX_CONNS];
	/* http_server_feed's own connection state (tests, fuzzing) */
	char *buf;
	size_t buf_len;
	bool continue_sent;
};

/* Bind path (must not exist: like Firecracker, an existing file is an
 * error) and listen. 0 or a negative errno (reported). */
int http_server_init(struct http_server *s, const char *path, http_handler_fn fn, void *opaque);
void http_server_destroy(struct http_server *s);   /* closes, unlinks the socket */
/* Fill fds (room for 1 + HTTP_MAX_CONNS) with what to poll; returns the
 * count. */
int http_server_pollfds(const struct http_server *s, struct pollfd *fds);
/* Handle what poll reported on those fds: accept, read, answer every
 * complete request. Never fails: a broken connection is closed. */
void http_server_service(struct http_server *s, const struct pollfd *fds, int n);

/* Feed bytes as if read from a connection; answers are written to out_fd
 * (-1: discarded). Returns false when the connection should be closed.
 * Used by the server and by the fuzz harness. */
bool http_server_feed(struct http_server *s, const char *data, size_t len, int out_fd);

#endif

#include "api/http.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"

static const char *find_head_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 3 < len; i++)
		if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n')
			return buf + i;
	return NULL;
}

static bool is_tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Trimmed header value equals word, case-insensitively. */
static bool value_is(const char *v, size_t n, const char *word)
{
	return strlen(word) == n && !strncasecmp(v, word, n);
}

#define BAD(why) do { if (err) *err = (why); return HTTP_PARSE_BAD; } while (0)

enum http_parse_result http_parse_request(const char *buf, size_t len, struct http_request *req,
					  size_t *consumed, const char **err)
{
	memset(req, 0, sizeof(*req));
	size_t scan = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD;
	const char *end = find_head_end(buf, scan);
	if (!end) {
		if (memchr(buf, '\0', scan))
			BAD("NUL byte in the request head");
		if (len >= HTTP_MAX_HEAD) {
			if (err)
				*err = "request head too large";
			return HTTP_PARSE_TOO_LARGE;
		}
		return HTTP_PARSE_INCOMPLETE;
	}
	size_t head_len = (size_t)(end - buf) + 4;
	const char *p = buf, *lim = end;

	/* Request line: METHOD SP target SP HTTP/1.x CRLF */
	size_t n = 0;
	while (p < lim && *p >= 'A' && *p <= 'Z') {
		if (n + 1 >= sizeof(req->method))
			BAD("method too long");
		req->method[n++] = *p++;
	}
	if (!n || p >= lim || *p != ' ')
		BAD("malformed request line");
	p++;
	if (p >= lim || *p != '/')
		BAD("request target must be an absolute path");
	n = 0;
	bool in_query = false;
	while (p < lim && *p != ' ') {
		unsigned char c = (unsigned char)*p++;
		if (c <= 0x20 || c >= 0x7f)
			BAD("invalid character in the request target");
		if (c == '?' || c == '#')
			in_query = true;
		if (in_query)
			continue;
		if (n + 1 >= sizeof(req->path))
			BAD("request target too long");
		req->path[n++] = (char)c;
	}
	if (p >= lim || *p != ' ')
		BAD("malformed request line");
	p++;
	if (lim - p < 8 || memcmp(p, "HTTP/1.", 7) || (p[7] != '0' && p[7] != '1'))
		BAD("unsupported HTTP version");
	req->keep_alive = p[7] == '1';
	p += 8;
	/* the head's buffer runs to lim + 4, so p[1] is readable */
	if (p < lim) {
		if (p[0] != '\r' || p[1] != '\n')
			BAD("malformed request line");
		p += 2;
	}

	/* Headers: name ":" OWS value OWS CRLF */
	long long content_length = -1;
	while (p < lim) {
		const char *eol = p;
		while (eol < lim && *eol != '\r')
			eol++;
		if (eol < lim && eol[1] != '\n')
			BAD("bare CR in a header");
		const char *colon = p;
		while (colon < eol && is_tchar((unsigned char)*colon))
			colon++;
		if (colon == p || colon >= eol || *colon != ':')
			BAD("malformed header");
		const char *v = colon + 1, *ve = eol;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		for (const char *q = v; q < ve; q++)
			if ((unsigned char)*q < 0x20 && *q != '\t')
				BAD("control character in a header value");
		size_t nlen = (size_t)(colon - p), vlen = (size_t)(ve - v);
		if (nlen == 14 && !strncasecmp(p, "Content-Length", 14)) {
			if (!vlen || vlen > 10)
				BAD("invalid Content-Length");
			long long cl = 0;
			for (const char *q = v; q < ve; q++) {
				if (*q < '0' || *q > '9')
					BAD("invalid Content-Length");
				cl = cl * 10 + (*q - '0');
			}
			if (content_length >= 0 && content_length != cl)
				BAD("conflicting Content-Length headers");
			content_length = cl;
		} else if (nlen == 17 && !strncasecmp(p, "Transfer-Encoding", 17)) {
			BAD("Transfer-Encoding is not supported");
		} else if (nlen == 10 && !strncasecmp(p, "Connection", 10)) {
			if (value_is(v, vlen, "close"))
				req->keep_alive = false;
			else if (value_is(v, vlen, "keep-alive"))
				req->keep_alive = true;
		} else if (nlen == 6 && !strncasecmp(p, "Expect", 6)) {
			if (!value_is(v, vlen, "100-continue"))
				BAD("unsupported Expect header");
			req->expect_continue = true;
		}
		p = eol + 2;
	}
	req->head_len = head_len;
	if (content_length > HTTP_MAX_BODY) {
		if (err)
			*err = "request body too large";
		return HTTP_PARSE_TOO_LARGE;
	}
	size_t body_len = content_length > 0 ? (size_t)content_length : 0;
	req->has_body = content_length >= 0;
	if (len - head_len < body_len)
		return HTTP_PARSE_INCOMPLETE;
	req->body = buf + head_len;
	req->body_len = body_len;
	*consumed = head_len + body_len;
	return HTTP_PARSE_OK;
}

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	default: return "Unknown";
	}
}

char *http_format_response(int status, const char *body, bool keep_alive, size_t *out_len)
{
	size_t blen = body ? strlen(body) : 0;
	size_t cap = 256 + blen;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	int n = snprintf(out, cap,
			 "HTTP/1.1 %d %s\r\nServer: kite API\r\n%sContent-Length: %zu\r\n%s\r\n",
			 status, http_reason(status),
			 body ? "Content-Type: application/json\r\n" : "", blen,
			 keep_alive ? "" : "Connection: close\r\n");
	if (n < 0 || (size_t)n + blen >= cap) {
		free(out);
		return NULL;
	}
	memcpy(out + n, body ? body : "", blen);
	out[(size_t)n + blen] = '\0'; /* for callers that print it */
	*out_len = (size_t)n + blen;
	return out;
}

static void write_all(int fd, const char *p, size_t n)
{
	if (fd < 0)
		return;
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == ENOTSOCK)
			w = write(fd, p, n);
		if (w <= 0) {
			if (w < 0 && errno == EAGAIN) {
				struct pollfd pfd = { .fd = fd, .events = POLLOUT };
				if (poll(&pfd, 1, 1000) > 0)
					continue;
			}
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

static void send_response(int fd, int status, const char *body, bool keep_alive)
{
	size_t len;
	char *r = http_format_response(status, body, keep_alive, &len);
	if (r) {
		write_all(fd, r, len);
		free(r);
	}
}

/* A fault answer with a JSON-escaped message (messages here are static). */
static void send_fault(int fd, const char *msg)
{
	char body[256];
	snprintf(body, sizeof(body), "{\"fault_message\": \"%s\"}", msg);
	send_response(fd, 400, body, false);
}

static bool feed(struct http_server *s, char *sbuf, size_t *sbuf_len, bool *cont,
		 const char *data, size_t len, int out_fd)
{
	size_t cap = HTTP_MAX_HEAD + HTTP_MAX_BODY;
	while (len) {
		size_t take = cap - (*sbuf_len);
		if (take > len)
			take = len;
		memcpy(sbuf + (*sbuf_len), data, take);
		(*sbuf_len) += take;
		data += take;
		len -= take;
		for (;;) {
			struct http_request req;
			size_t used = 0;
			const char *why = "malformed request";
			enum http_parse_result r = http_parse_request(sbuf, (*sbuf_len), &req, &used, &why);
			if (r == HTTP_PARSE_INCOMPLETE) {
				if (req.expect_continue && !(*cont)) {
					static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
					write_all(out_fd, msg, sizeof(msg) - 1);
					(*cont) = true;
				}
				if ((*sbuf_len) >= cap) { /* cannot happen: limits are below cap */
					send_fault(out_fd, "request too large");
					(*sbuf_len) = 0;
					return false;
				}
				break;
			}
			if (r < 0) {
				send_fault(out_fd, why);
				(*sbuf_len) = 0;
				return false;
			}
			struct http_response resp = { 500, NULL };
			s->handler(s->opaque, &req, &resp);
			send_response(out_fd, resp.status, resp.body, req.keep_alive);
			free(resp.body);
			memmove(sbuf, sbuf + used, (*sbuf_len) - used);
			(*sbuf_len) -= used;
			(*cont) = false;
			if (!req.keep_alive) {
				(*sbuf_len) = 0;
				return false;
			}
		}
	}
	return true;
}

bool http_server_feed(struct http_server *s, const char *data, size_t len, int out_fd)
{
	return feed(s, s->buf, &s->buf_len, &s->continue_sent, data, len, out_fd);
}

int http_server_init(struct http_server *s, const char *path, http_handler_fn fn, void *opaque)
{
	memset(s, 0, sizeof(*s));
	s->listen_fd = -1;
	for (int i = 0; i < HTTP_MAX_CONNS; i++)
		s->conns[i].fd = -1;
	s->handler = fn;
	s->opaque = opaque;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		kite_err("API socket path '%s' is too long (at most %zu bytes)", path,
			 sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	s->sock_path = strdup(path);
	if (!s->sock_path) {
		http_server_destroy(s);
		return -ENOMEM;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		kite_err("cannot create the API socket: %s", strerror(e));
		http_server_destroy(s);
		return -e;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		int e = errno;
		kite_err("cannot bind the API socket '%s': %s", path, strerror(e));
		close(fd);
		free(s->sock_path);
		s->sock_path = NULL; /* not ours to unlink */
		http_server_destroy(s);
		return -e;
	}
	s->listen_fd = fd;
	return 0;
}

static void close_conn(struct http_conn *c)
{
	/* Bytes left unread would make close() reset the connection and the
	 * client could lose our last answer (the 400): finish our side, then
	 * discard what has already arrived. */
	shutdown(c->fd, SHUT_WR);
	char junk[4096];
	for (int i = 0; i < 64; i++)
		if (recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT) <= 0)
			break;
	close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->buf_len = 0;
	c->continue_sent = false;
}

void http_server_destroy(struct http_server *s)
{
	for (int i = 0; i < HTTP_MAX_CONNS; i++)
		if (s->conns[i].fd >= 0)
			close_conn(&s->conns[i]);
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		if (s->sock_path)
			unlink(s->sock_path);
	}
	free(s->sock_path);
	free(s->buf);
	s->listen_fd = -1;
	s->buf = NULL;
	s->sock_path = NULL;
}

int http_server_pollfds(const struct http_server *s, struct pollfd *fds)
{
	int n = 0;
	bool room = false;
	for (int i = 0; i < HTTP_MAX_CONNS; i++) {
		if (s->conns[i].fd >= 0)
			fds[n++] = (struct pollfd){ .fd = s->conns[i].fd, .events = POLLIN };
		else
			room = true;
	}
	/* full: new clients wait in the backlog */
	fds[n++] = (struct pollfd){ .fd = room ? s->listen_fd : -1, .events = POLLIN };
	return n;
}

static void service_conn(struct http_server *s, struct http_conn *c)
{
	char tmp[4096];
	ssize_t n = recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0 || !feed(s, c->buf, &c->buf_len, &c->continue_sent, tmp, (size_t)n, c->fd))
		close_conn(c);
}

void http_server_service(struct http_server *s, const struct pollfd *fds, int n)
{
	for (int k = 0; k < n; k++) {
		if (!fds[k].revents || fds[k].fd < 0)
			continue;
		if (fds[k].fd == s->listen_fd) {
			int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			struct http_conn *c = NULL;
			for (int i = 0; i < HTTP_MAX_CONNS && !c; i++)
				if (s->conns[i].fd < 0)
					c = &s->conns[i];
			char *buf = c ? malloc(HTTP_MAX_HEAD + HTTP_MAX_BODY + 1) : NULL;
			if (!buf) {
				close(fd);
				continue;
			}
			*c = (struct http_conn){ .fd = fd, .buf = buf };
			continue;
		}
		for (int i = 0; i < HTTP_MAX_CONNS; i++)
			if (s->conns[i].fd == fds[k].fd) {
				service_conn(s, &s->conns[i]);
				break;
			}
	}
}

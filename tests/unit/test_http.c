/* The API's HTTP/1.1 request parser and the connection feeder. */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "api/http.h"

static enum http_parse_result parse(const char *s, struct http_request *r, size_t *used)
{
	*used = 0;
	return http_parse_request(s, strlen(s), r, used, NULL);
}

Test(http, get_without_body)
{
	struct http_request r;
	size_t used;
	const char *s = "GET /machine-config HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n";
	cr_assert_eq(parse(s, &r, &used), HTTP_PARSE_OK);
	cr_assert_str_eq(r.method, "GET");
	cr_assert_str_eq(r.path, "/machine-config");
	cr_assert_eq(r.body_len, 0);
	cr_assert(r.keep_alive);
	cr_assert_eq(used, strlen(s));
}

Test(http, put_with_body_and_query_stripped)
{
	struct http_request r;
	size_t used;
	const char *s = "PUT /actions?x=1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET";
	cr_assert_eq(parse(s, &r, &used), HTTP_PARSE_OK);
	cr_assert_str_eq(r.path, "/actions");
	cr_assert_eq(r.body_len, 5);
	cr_assert_eq(memcmp(r.body, "hello", 5), 0);
	cr_assert_eq(used, strlen(s) - 3, "pipelined bytes stay for the next request");
}

Test(http, incomplete_head_and_body)
{
	struct http_request r;
	size_t used;
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: x\r\n", &r, &used), HTTP_PARSE_INCOMPLETE);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", &r, &used),
		     HTTP_PARSE_INCOMPLETE);
	cr_assert_eq(parse("", &r, &used), HTTP_PARSE_INCOMPLETE);
}

Test(http, connection_close_and_http10)
{
	struct http_request r;
	size_t used;
	cr_assert_eq(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &r, &used), HTTP_PARSE_OK);
	cr_assert_not(r.keep_alive);
	cr_assert_eq(parse("GET / HTTP/1.0\r\n\r\n", &r, &used), HTTP_PARSE_OK);
	cr_assert_not(r.keep_alive);
	cr_assert_eq(parse("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n", &r, &used), HTTP_PARSE_OK);
	cr_assert(r.keep_alive);
}

Test(http, malformed)
{
	static const char *const bad[] = {
		"GET\r\n\r\n",
		"get / HTTP/1.1\r\n\r\n",
		"GET foo HTTP/1.1\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"GET / HTTP/1.1 extra\r\n\r\n",
		"GET /a b HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
		"GET / HTTP/1.1\r\n: empty\r\n\r\n",
		"PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
		"PUT / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
		"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n",
		"GET /\x01 HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct http_request r;
		size_t used;
		cr_assert_eq(parse(bad[i], &r, &used), HTTP_PARSE_BAD, "case %zu: %s", i, bad[i]);
	}
}

Test(http, size_limits)
{
	struct http_request r;
	size_t used;
	char big[HTTP_MAX_HEAD + 64];
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /", 5);
	cr_assert_eq(http_parse_request(big, sizeof(big), &r, &used, NULL), HTTP_PARSE_TOO_LARGE);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nContent-Length: 51201\r\n\r\n", &r, &used),
		     HTTP_PARSE_TOO_LARGE);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", &r, &used),
		     HTTP_PARSE_BAD);
}

Test(http, expect_continue_is_flagged)
{
	struct http_request r;
	size_t used;
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
			   &r, &used), HTTP_PARSE_INCOMPLETE);
	cr_assert(r.expect_continue);
}

Test(http, response_format)
{
	size_t len;
	char *s = http_format_response(204, NULL, true, &len);
	cr_assert_str_eq(s, "HTTP/1.1 204 No Content\r\nServer: kite API\r\nContent-Length: 0\r\n\r\n");
	free(s);
	s = http_format_response(400, "{}", false, &len);
	cr_assert(strstr(s, "HTTP/1.1 400 Bad Request\r\n") == s);
	cr_assert(strstr(s, "Connection: close\r\n"));
	cr_assert(strstr(s, "Content-Type: application/json\r\n"));
	cr_assert_eq(strcmp(s + len - 4, "\r\n{}"), 0);
	free(s);
}

static int calls;
static void echo_handler(void *opaque, const struct http_request *req, struct http_response *resp)
{
	(void)opaque;
	calls++;
	resp->status = 200;
	resp->body = strndup(req->body ? req->body : "", req->body_len);
}

static char *feed(const char *in, size_t split, bool *open)
{
	struct http_server s = { .listen_fd = -1, .handler = echo_handler };
	s.buf = malloc(HTTP_MAX_HEAD + HTTP_MAX_BODY + 1);
	int p[2];
	cr_assert_eq(pipe(p), 0);
	size_t n = strlen(in);
	*open = http_server_feed(&s, in, split, p[1]);
	if (*open && split < n)
		*open = http_server_feed(&s, in + split, n - split, p[1]);
	close(p[1]);
	char *out = calloc(1, 65536);
	size_t got = 0;
	ssize_t r;
	while ((r = read(p[0], out + got, 65535 - got)) > 0)
		got += (size_t)r;
	close(p[0]);
	free(s.buf);
	return out;
}

Test(http, feed_pipelined_and_split)
{
	const char *in = "PUT /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nabGET /b HTTP/1.1\r\n\r\n";
	for (size_t split = 1; split < strlen(in); split += 7) {
		bool open;
		calls = 0;
		char *out = feed(in, split, &open);
		cr_assert(open);
		cr_assert_eq(calls, 2, "split %zu", split);
		cr_assert(strstr(out, "\r\n\r\nab"));
		free(out);
	}
}

Test(http, feed_malformed_answers_400_and_closes)
{
	bool open;
	calls = 0;
	char *out = feed("BLAH\r\n\r\n", 8, &open);
	cr_assert_not(open);
	cr_assert_eq(calls, 0);
	cr_assert(strstr(out, "HTTP/1.1 400 Bad Request") == out);
	cr_assert(strstr(out, "{\"fault_message\": "));
	free(out);
}

Test(http, feed_expect_continue)
{
	bool open;
	const char *in = "PUT /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab";
	char *out = feed(in, strlen(in) - 2, &open);
	cr_assert(open);
	cr_assert(strstr(out, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK") == out);
	free(out);
}

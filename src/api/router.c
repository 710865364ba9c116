/* The API's routes: method + path to a handler, with Firecracker's error
 * answers for everything that does not match. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "util/log.h"

void api_fault(struct http_response *resp, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "fault_message", json_object_new_string(msg));
	resp->status = status;
	resp->body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

void api_reply_json(struct http_response *resp, int status, struct json_object *o)
{
	resp->status = status;
	resp->body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/* Firecracker's ids: ASCII letters, digits and '_', at most 64. */
static bool valid_id(const char *id)
{
	size_t n = strlen(id);
	if (!n || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return false;
	}
	return true;
}

enum method { M_GET, M_PUT, M_PATCH, M_OTHER };

static enum method method_of(const char *m)
{
	if (!strcmp(m, "GET")) return M_GET;
	if (!strcmp(m, "PUT")) return M_PUT;
	if (!strcmp(m, "PATCH")) return M_PATCH;
	return M_OTHER;
}

static void route(struct api *api, const struct http_request *req, struct http_response *resp)
{
	enum method m = method_of(req->method);
	if (m == M_OTHER) {
		api_fault(resp, 400, "Invalid request method and/or path: %s %s.", req->method,
			  req->path);
		return;
	}
	/* Bodies: GET takes none, PUT and PATCH need one. */
	if (m == M_GET && req->body_len) {
		api_fault(resp, 400, "GET request cannot have a body.");
		return;
	}
	if (m != M_GET && !req->body_len) {
		api_fault(resp, 400, "Empty %s request.", m == M_PUT ? "PUT" : "PATCH");
		return;
	}
	/* Split "/a/b" into its first two segments; a trailing '/' is ignored. */
	char path[HTTP_MAX_PATH];
	snprintf(path, sizeof(path), "%s", req->path);
	size_t plen = strlen(path);
	while (plen > 1 && path[plen - 1] == '/')
		path[--plen] = '\0';
	char *seg1 = path + 1, *seg2 = strchr(seg1, '/');
	if (seg2) {
		*seg2++ = '\0';
		if (strchr(seg2, '/'))
			goto bad_path;
	}
	struct api_body b = { req->body, req->body_len };

	if (!*seg1 && !seg2) {
		if (m == M_GET)
			return api_get_instance(api, resp);
	} else if (!strcmp(seg1, "version") && !seg2) {
		if (m == M_GET)
			return api_get_version(api, resp);
	} else if (!strcmp(seg1, "actions") && !seg2) {
		if (m == M_PUT)
			return api_put_actions(api, &b, resp);
	} else if (!strcmp(seg1, "boot-source") && !seg2) {
		if (m == M_PUT)
			return api_put_boot_source(api, &b, resp);
	} else if (!strcmp(seg1, "machine-config") && !seg2) {
		if (m == M_GET)
			return api_get_machine_config(api, resp);
		return api_set_machine_config(api, &b, m == M_PATCH, resp);
	} else if (!strcmp(seg1, "drives") || !strcmp(seg1, "network-interfaces")) {
		bool drive = seg1[0] == 'd';
		if (m == M_GET)
			goto bad_path;
		if (!seg2 || !*seg2) {
			api_fault(resp, 400, "Required key %s not present in the request path.",
				  drive ? "drive_id" : "iface_id");
			return;
		}
		if (!valid_id(seg2)) {
			api_fault(resp, 400,
				  "Invalid ID: '%.64s': the ID must be 1 to 64 ASCII letters, digits or underscores.",
				  seg2);
			return;
		}
		if (drive)
			return m == M_PUT ? api_put_drive(api, seg2, &b, resp)
					  : api_patch_drive(api, seg2, &b, resp);
		return m == M_PUT ? api_put_iface(api, seg2, &b, resp)
				  : api_patch_iface(api, seg2, &b, resp);
	} else if (!strcmp(seg1, "logger") && !seg2) {
		if (m == M_PUT)
			return api_put_logger(api, &b, resp);
	} else if (!strcmp(seg1, "metrics") && !seg2) {
		if (m == M_PUT)
			return api_put_metrics(api, &b, resp);
	} else if (!strcmp(seg1, "entropy") && !seg2) {
		if (m == M_PUT)
			return api_put_entropy(api, &b, resp);
	} else if (!strcmp(seg1, "vm")) {
		if (!seg2 && m == M_PATCH)
			return api_patch_vm(api, &b, resp);
		if (seg2 && !strcmp(seg2, "config") && m == M_GET)
			return api_get_vm_config(api, resp);
	}
bad_path:
	api_fault(resp, 400, "Invalid request method and/or path: %s %s.", req->method, req->path);
}

void api_handle(void *opaque, const struct http_request *req, struct http_response *resp)
{
	struct api *api = opaque;
	atomic_fetch_add(&api->metrics.api_requests, 1);
	switch (method_of(req->method)) {
	case M_GET: atomic_fetch_add(&api->metrics.api_get, 1); break;
	case M_PUT: atomic_fetch_add(&api->metrics.api_put, 1); break;
	case M_PATCH: atomic_fetch_add(&api->metrics.api_patch, 1); break;
	default: break;
	}
	resp->status = 500;
	resp->body = NULL;
	route(api, req, resp);
	if (resp->status >= 400) {
		atomic_fetch_add(&api->metrics.api_errors, 1);
		log_msg(LOG_INFO, "API %s %s: %d %s", req->method, req->path, resp->status,
			resp->body ? resp->body : "");
	} else {
		log_msg(LOG_DEBUG, "API %s %s: %d", req->method, req->path, resp->status);
	}
}

/* The API's request handlers, one per resource and method (handlers.c). */
#ifndef KITE_API_HANDLERS_H
#define KITE_API_HANDLERS_H

#include <stdarg.h>

#include "api/api.h"

struct api_body {
	const char *data;
	size_t len;
};

/* Fill resp with {"fault_message": ...}. */
void api_fault(struct http_response *resp, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Fill resp with o (consumed). */
void api_reply_json(struct http_response *resp, int status, struct json_object *o);

void api_get_instance(struct api *api, struct http_response *resp);
void api_get_version(struct api *api, struct http_response *resp);
void api_put_actions(struct api *api, const struct api_body *b, struct http_response *resp);
void api_put_boot_source(struct api *api, const struct api_body *b, struct http_response *resp);
void api_get_machine_config(struct api *api, struct http_response *resp);
void api_set_machine_config(struct api *api, const struct api_body *b, bool patch,
			    struct http_response *resp);
void api_put_drive(struct api *api, const char *id, const struct api_body *b,
		   struct http_response *resp);
void api_patch_drive(struct api *api, const char *id, const struct api_body *b,
		     struct http_response *resp);
void api_put_iface(struct api *api, const char *id, const struct api_body *b,
		   struct http_response *resp);
void api_patch_iface(struct api *api, const char *id, const struct api_body *b,
		     struct http_response *resp);
void api_put_logger(struct api *api, const struct api_body *b, struct http_response *resp);
void api_put_metrics(struct api *api, const struct api_body *b, struct http_response *resp);
void api_put_entropy(struct api *api, const struct api_body *b, struct http_response *resp);
void api_patch_vm(struct api *api, const struct api_body *b, struct http_response *resp);
void api_get_vm_config(struct api *api, struct http_response *resp);

#endif

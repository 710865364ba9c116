/* Checking a JSON request body against the fields a resource accepts,
 * with Firecracker's (serde's) error wording. */
#ifndef KITE_API_JSON_UTIL_H
#define KITE_API_JSON_UTIL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum api_field_type { F_STRING, F_BOOL, F_UINT, F_OBJECT, F_ANY };

struct api_field {
	const char *name;
	enum api_field_type type;
	bool required;
};

/* Parse body as one JSON value (trailing bytes are an error). NULL with a
 * message in err when it is not JSON. */
struct json_object *api_json_parse(const char *body, size_t len, char *err, size_t errlen);

/* o must be an object whose keys are all in fields, each of its type
 * (null accepted for optional fields), the required ones present.
 * 0, or -EINVAL with the serde-style reason in err. */
int api_json_check(struct json_object *o, const struct api_field *fields, size_t n,
		   char *err, size_t errlen);

/* Getters for checked objects: absent or null leave *out untouched. */
bool api_json_str(struct json_object *o, const char *key, const char **out);
bool api_json_bool(struct json_object *o, const char *key, bool *out);
bool api_json_uint(struct json_object *o, const char *key, uint64_t *out);

#endif

#include "api/json_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct json_object *api_json_parse(const char *body, size_t len, char *err, size_t errlen)
{
	if (len > INT32_MAX) {
		snprintf(err, errlen, "body too large");
		return NULL;
	}
	struct json_tokener *tok = json_tokener_new_ex(32);
	if (!tok) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	struct json_object *o = json_tokener_parse_ex(tok, body, (int)len);
	enum json_tokener_error e = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	if (!o || e != json_tokener_success) {
		if (e == json_tokener_continue)
			snprintf(err, errlen, "EOF while parsing a value at offset %zu", len);
		else
			snprintf(err, errlen, "%s at offset %zu", json_tokener_error_desc(e), used);
		json_object_put(o);
		o = NULL;
	} else {
		for (size_t i = used; i < len; i++) {
			if (!strchr(" \t\r\n", body[i])) {
				snprintf(err, errlen, "trailing characters at offset %zu", i);
				json_object_put(o);
				o = NULL;
				break;
			}
		}
	}
	json_tokener_free(tok);
	return o;
}

static const char *type_word(enum api_field_type t)
{
	switch (t) {
	case F_STRING: return "a string";
	case F_BOOL: return "a boolean";
	case F_UINT: return "an unsigned integer";
	case F_OBJECT: return "a map";
	default: return "a value";
	}
}

static const char *json_word(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null: return "null";
	case json_type_boolean: return "boolean";
	case json_type_double: return "floating point";
	case json_type_int: return json_object_get_int64(v) < 0 ? "integer (negative)" : "integer";
	case json_type_object: return "map";
	case json_type_array: return "sequence";
	case json_type_string: return "string";
	}
	return "value";
}

static bool type_ok(struct json_object *v, enum api_field_type t)
{
	switch (t) {
	case F_STRING: return json_object_is_type(v, json_type_string);
	case F_BOOL: return json_object_is_type(v, json_type_boolean);
	case F_UINT:
		/* json-c keeps integers beyond INT64 as uint64 */
		if (!json_object_is_type(v, json_type_int))
			return false;
		return json_object_get_int64(v) >= 0;
	case F_OBJECT: return json_object_is_type(v, json_type_object);
	case F_ANY: return true;
	}
	return false;
}

int api_json_check(struct json_object *o, const struct api_field *fields, size_t n,
		   char *err, size_t errlen)
{
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "invalid type: %s, expected a map", json_word(o));
		return -EINVAL;
	}
	json_object_object_foreach(o, key, val) {
		size_t i;
		for (i = 0; i < n; i++)
			if (!strcmp(key, fields[i].name))
				break;
		if (i == n) {
			char list[512] = "";
			size_t used = 0;
			for (size_t j = 0; j < n && used < sizeof(list); j++)
				used += (size_t)snprintf(list + used, sizeof(list) - used, "%s`%s`",
							 j ? ", " : "", fields[j].name);
			snprintf(err, errlen, "unknown field `%.64s`, expected one of %s", key, list);
			return -EINVAL;
		}
		if (json_object_is_type(val, json_type_null) && !fields[i].required)
			continue;
		if (!type_ok(val, fields[i].type)) {
			snprintf(err, errlen, "invalid type: %s, expected %s for `%s`", json_word(val),
				 type_word(fields[i].type), key);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *v;
		if (fields[i].required &&
		    (!json_object_object_get_ex(o, fields[i].name, &v) ||
		     json_object_is_type(v, json_type_null))) {
			snprintf(err, errlen, "missing field `%s`", fields[i].name);
			return -EINVAL;
		}
	}
	return 0;
}

static struct json_object *get(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	return v;
}

bool api_json_str(struct json_object *o, const char *key, const char **out)
{
	struct json_object *v = get(o, key);
	if (!v || !json_object_is_type(v, json_type_string))
		return false;
	*out = json_object_get_string(v);
	return true;
}

bool api_json_bool(struct json_object *o, const char *key, bool *out)
{
	struct json_object *v = get(o, key);
	if (!v || !json_object_is_type(v, json_type_boolean))
		return false;
	*out = json_object_get_boolean(v);
	return true;
}

bool api_json_uint(struct json_object *o, const char *key, uint64_t *out)
{
	struct json_object *v = get(o, key);
	if (!v || !json_object_is_type(v, json_type_int))
		return false;
	*out = json_object_get_uint64(v);
	return true;
}

#include "backends/net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

void net_format_mac(const uint8_t mac[6], char *buf)
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
		 mac[4], mac[5]);
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &tail) != 6 || strlen(s) != 17)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	if (mac[0] & 1)
		return -1; /* multicast: no NIC may own it */
	if (!(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]))
		return -1;
	return 0;
}

static int parse_port(const char *s, size_t len, uint16_t *out)
{
	char buf[8];
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = 0;
	char *end;
	long v = strtol(buf, &end, 10);
	if (*end || v < 1 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

static int parse_addr(const char *s, size_t len, uint32_t *out)
{
	char buf[INET_ADDRSTRLEN];
	if (len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = 0;
	struct in_addr a;
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -1;
	*out = a.s_addr;
	return 0;
}

/* [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT (QEMU's form). */
static int parse_hostfwd(const char *s, struct net_hostfwd *f)
{
	memset(f, 0, sizeof(*f));
	f->host_addr = htonl(0x7f000001); /* loopback unless asked: no surprise exposure */
	if (!strncmp(s, "tcp:", 4)) {
		s += 4;
	} else if (!strncmp(s, "udp:", 4)) {
		f->udp = true;
		s += 4;
	} else if (s[0] == ':') {
		s += 1;
	}
	const char *dash = strchr(s, '-');
	if (!dash)
		return -1;
	/* host side: [ADDR:]PORT */
	const char *colon = memchr(s, ':', (size_t)(dash - s));
	const char *port = s;
	if (colon) {
		if (colon > s && parse_addr(s, (size_t)(colon - s), &f->host_addr))
			return -1;
		port = colon + 1;
	}
	if (parse_port(port, (size_t)(dash - port), &f->host_port))
		return -1;
	/* guest side: [ADDR]:PORT */
	const char *g = dash + 1;
	colon = strchr(g, ':');
	if (!colon)
		return -1;
	if (colon > g && parse_addr(g, (size_t)(colon - g), &f->guest_addr))
		return -1;
	return parse_port(colon + 1, strlen(colon + 1), &f->guest_port);
}

/* FNV-1a: a stable, well-spread hash for the generated MAC. */
static uint64_t fnv1a(const void *p, size_t n, uint64_t h)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void generate_mac(const char *text, unsigned index, uint8_t mac[6])
{
	uint64_t h = fnv1a("kite-nic", 8, 0xcbf29ce484222325ULL);
	h = fnv1a(&index, sizeof(index), h);
	h = fnv1a(text, strlen(text), h);
	/* 0x52: locally administered (bit 1), unicast (bit 0 clear); 'K' next,
	 * so kite's NICs are recognisable in a neighbour table. */
	mac[0] = 0x52;
	mac[1] = 0x4b;
	for (int i = 2; i < 6; i++)
		mac[i] = (uint8_t)(h >> (8 * (i - 2)));
}

int net_config_parse(const char *text, unsigned index, struct net_config *out)
{
	memset(out, 0, sizeof(*out));
	char *copy = strdup(text);
	if (!copy) {
		kite_err("--net '%s': out of memory", text);
		return -ENOMEM;
	}
	int ret = -EINVAL;
	char *save = NULL;
	char *first = strtok_r(copy, ",", &save);
	if (!first) {
		kite_err("invalid --net '%s': expected tap=NAME or user", text);
		goto out;
	}
	if (!strncmp(first, "tap=", 4)) {
		const char *name = first + 4;
		if (!*name || strlen(name) >= IFNAMSIZ || strchr(name, '/')) {
			kite_err("invalid --net '%s': tap name '%s' must have 1..%d characters",
				 text, name, IFNAMSIZ - 1);
			goto out;
		}
		out->kind = NET_TAP;
		strcpy(out->ifname, name);
	} else if (!strcmp(first, "user")) {
		out->kind = NET_USER;
	} else {
		kite_err("invalid --net '%s': expected tap=NAME or user first", text);
		goto out;
	}
	for (char *opt; (opt = strtok_r(NULL, ",", &save));) {
		if (!strncmp(opt, "mac=", 4)) {
			if (parse_mac(opt + 4, out->mac)) {
				kite_err("invalid --net '%s': mac '%s' is not a unicast "
					 "XX:XX:XX:XX:XX:XX address", text, opt + 4);
				goto out;
			}
			out->mac_given = true;
		} else if (!strncmp(opt, "hostfwd=", 8) && out->kind == NET_USER) {
			if (out->nr_hostfwd >= NET_MAX_HOSTFWD) {
				kite_err("invalid --net '%s': at most %d hostfwd", text, NET_MAX_HOSTFWD);
				goto out;
			}
			if (parse_hostfwd(opt + 8, &out->hostfwd[out->nr_hostfwd])) {
				kite_err("invalid --net '%s': hostfwd '%s': expected "
					 "[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT", text, opt + 8);
				goto out;
			}
			out->nr_hostfwd++;
		} else {
			kite_err("invalid --net '%s': unknown option '%s'", text, opt);
			goto out;
		}
	}
	if (!out->mac_given)
		generate_mac(text, index, out->mac);
	ret = 0;
out:
	free(copy);
	return ret;
}

int net_backend_create(const struct net_config *cfg, struct event_loop *loop,
		       struct net_backend **out)
{
	switch (cfg->kind) {
	case NET_TAP:
		return net_tap_create(cfg->ifname, loop, out);
	case NET_USER:
		return net_user_create(cfg, loop, out);
	}
	return -EINVAL;
}

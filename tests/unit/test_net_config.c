/* The --net option parser and the generated MAC. */
#include <arpa/inet.h>
#include <criterion/criterion.h>

#include "backends/net/net.h"
#include <errno.h>

Test(net_config, tap_with_mac)
{
	struct net_config c;
	cr_assert_eq(net_config_parse("tap=tap7,mac=02:00:00:aa:bb:cc", 0, &c), 0);
	cr_assert_eq(c.kind, NET_TAP);
	cr_assert_str_eq(c.ifname, "tap7");
	cr_assert(c.mac_given);
	uint8_t want[6] = { 2, 0, 0, 0xaa, 0xbb, 0xcc };
	cr_assert_eq(memcmp(c.mac, want, 6), 0);
	char buf[18];
	net_format_mac(c.mac, buf);
	cr_assert_str_eq(buf, "02:00:00:aa:bb:cc");
}

Test(net_config, user_with_forwards)
{
	struct net_config c;
	cr_assert_eq(net_config_parse("user,hostfwd=tcp::8080-:80,hostfwd=udp:0.0.0.0:5353-10.0.2.15:53,"
				      "hostfwd=:2222-:22", 1, &c), 0);
	cr_assert_eq(c.kind, NET_USER);
	cr_assert_eq(c.nr_hostfwd, 3);
	cr_assert_not(c.hostfwd[0].udp);
	cr_assert_eq(c.hostfwd[0].host_port, 8080);
	cr_assert_eq(c.hostfwd[0].guest_port, 80);
	cr_assert_eq(c.hostfwd[0].host_addr, htonl(0x7f000001), "loopback by default");
	cr_assert_eq(c.hostfwd[0].guest_addr, 0);
	cr_assert(c.hostfwd[1].udp);
	cr_assert_eq(c.hostfwd[1].host_addr, 0);
	cr_assert_eq(c.hostfwd[1].guest_addr, htonl(0x0a00020f));
	cr_assert_eq(c.hostfwd[1].guest_port, 53);
	cr_assert_eq(c.hostfwd[2].host_port, 2222);
	cr_assert_not(c.mac_given);
}

Test(net_config, generated_mac_is_stable_local_unicast_and_distinct)
{
	struct net_config a, b, c;
	cr_assert_eq(net_config_parse("user", 0, &a), 0);
	cr_assert_eq(net_config_parse("user", 0, &b), 0);
	cr_assert_eq(net_config_parse("user", 1, &c), 0);
	cr_assert_eq(memcmp(a.mac, b.mac, 6), 0, "same option, same MAC");
	cr_assert_neq(memcmp(a.mac, c.mac, 6), 0, "another NIC, another MAC");
	cr_assert_eq(a.mac[0] & 3, 2, "locally administered, unicast");
}

Test(net_config, rejects_bad_input)
{
	struct net_config c;
	const char *bad[] = {
		"", "tap", "tap=", "tap=waytoolonginterfacename0", "bridge=br0", "user,foo=1",
		"user,mac=01:00:00:00:00:01" /* multicast */, "user,mac=00:00:00:00:00:00",
		"user,mac=52:54:00:12:34", "user,mac=52:54:00:12:34:567",
		"user,hostfwd=tcp::0-:80", "user,hostfwd=tcp::70000-:80", "user,hostfwd=tcp::80",
		"user,hostfwd=tcp::80-:", "user,hostfwd=sctp::80-:80", "user,hostfwd=tcp:1.2.3:80-:80",
		"tap=t0,hostfwd=tcp::80-:80", "tap=a/b",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(net_config_parse(bad[i], 0, &c), -EINVAL, "accepted '%s'", bad[i]);
}

Test(net_config, missing_tap_is_named)
{
	struct net_backend *be;
	cr_assert_eq(net_tap_create("kitenosuch9", NULL, &be), -ENODEV);
}

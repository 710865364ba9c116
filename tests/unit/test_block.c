#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/block/block.h"

/* ---- --disk parsing ---- */

Test(block, disk_path_only)
{
	struct disk_config c;
	cr_assert_eq(disk_config_parse("/images/root.img", &c), 0);
	cr_assert_str_eq(c.path, "/images/root.img");
	cr_assert_not(c.readonly);
	cr_assert_str_eq(c.id, "root.img", "serial defaults to the base name");
	cr_assert_eq(c.engine, BLK_ENGINE_DEFAULT);
}

Test(block, disk_options)
{
	struct disk_config c;
	cr_assert_eq(disk_config_parse("disk.raw,readonly,id=boot", &c), 0);
	cr_assert_str_eq(c.path, "disk.raw");
	cr_assert(c.readonly);
	cr_assert_str_eq(c.id, "boot");
	cr_assert_eq(disk_config_parse("d,id=12345678901234567890,io=threads", &c), 0);
	cr_assert_str_eq(c.id, "12345678901234567890");
	cr_assert_eq(c.engine, BLK_ENGINE_THREADS);
	cr_assert_eq(disk_config_parse("d,io=sync,readonly", &c), 0);
	cr_assert_eq(c.engine, BLK_ENGINE_SYNC);
	cr_assert(c.readonly);
}

Test(block, disk_long_basename_truncated_to_20)
{
	struct disk_config c;
	cr_assert_eq(disk_config_parse("/x/a-very-long-image-file-name.qcow", &c), 0);
	cr_assert_eq(strlen(c.id), 20);
	cr_assert_str_eq(c.id, "a-very-long-image-fi");
}

Test(block, disk_errors)
{
	struct disk_config c;
	static const char *bad[] = {
		"", ",readonly", "d,", "d,readonly,readonly", "d,ro", "d,id=",
		"d,id=123456789012345678901", "d,io=aio", "d,io=", "d,id=a,id=b", "/dir/",
		"d,readonlyx", "d,io=uringg",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(disk_config_parse(bad[i], &c), -EINVAL, "'%s'", bad[i]);
	cr_assert_eq(disk_config_parse(NULL, &c), -EINVAL);
}

/* ---- opening ---- */

static char path[64];

static void make_file(size_t size)
{
	strcpy(path, "/tmp/kite-blk-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	uint8_t *buf = malloc(size);
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(i ^ (i >> 9));
	cr_assert_eq(write(fd, buf, size), (ssize_t)size);
	free(buf);
	close(fd);
}

Test(block, open_errors_name_the_problem)
{
	struct blk_backend *be;
	cr_assert_eq(blk_open(&be, "/nonexistent/kite.img", false, BLK_ENGINE_SYNC), -ENOENT);
	cr_assert_eq(blk_open(&be, "/tmp", true, BLK_ENGINE_SYNC), -EINVAL, "a directory");
	cr_assert_eq(blk_open(&be, "/dev/null", true, BLK_ENGINE_SYNC), -EINVAL, "a char device");
	make_file(4096);
	chmod(path, 0400);
	if (geteuid() != 0)
		cr_assert_eq(blk_open(&be, path, false, BLK_ENGINE_SYNC), -EACCES);
	cr_assert_eq(blk_open(&be, path, true, BLK_ENGINE_SYNC), 0, "read-only open works");
	cr_assert(fcntl(be->fd, F_GETFL) >= 0);
	cr_assert_eq(fcntl(be->fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	blk_close(be);
	unlink(path);
}

Test(block, size_and_unaligned_tail)
{
	struct blk_backend *be;
	make_file(4096 + 100);
	cr_assert_eq(blk_open(&be, path, false, BLK_ENGINE_SYNC), 0);
	cr_assert_eq(be->size, 4196);
	blk_close(be);
	unlink(path);
}

/* ---- I/O on every engine ---- */

struct waiter {
	int done, res;
};

static void on_done(struct blk_io *io, int res)
{
	struct waiter *w = io->opaque;
	w->res = res;
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
}

static int run(struct blk_backend *be, struct blk_io *io)
{
	struct waiter w = { 0, 0 };
	io->done = on_done;
	io->opaque = &w;
	blk_submit(be, io);
	blk_kick(be);
	while (!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE))
		usleep(100);
	return w.res;
}

static void engine_io(enum blk_engine engine)
{
	struct blk_backend *be;
	make_file(64 * 1024);
	cr_assert_eq(blk_open(&be, path, false, engine), 0);
	uint8_t a[1000], b[3096];
	struct iovec iov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
	struct blk_io io = { .op = BLK_OP_READ, .offset = 8192, .len = 4096, .iov = iov, .iovcnt = 2 };
	cr_assert_eq(run(be, &io), 0);
	cr_assert_eq(a[0], (uint8_t)(8192 ^ (8192 >> 9)));
	cr_assert_eq(b[3095], (uint8_t)(12287 ^ (12287 >> 9)));

	memset(a, 0x5a, sizeof(a));
	memset(b, 0xa5, sizeof(b));
	io = (struct blk_io){ .op = BLK_OP_WRITE, .offset = 0, .len = 4096, .iov = iov, .iovcnt = 2 };
	cr_assert_eq(run(be, &io), 0);
	io = (struct blk_io){ .op = BLK_OP_FLUSH };
	cr_assert_eq(run(be, &io), 0);
	uint8_t chk[4096];
	int fd = open(path, O_RDONLY);
	cr_assert_eq(pread(fd, chk, 4096, 0), 4096);
	cr_assert_eq(chk[999], 0x5a);
	cr_assert_eq(chk[1000], 0xa5);

	io = (struct blk_io){ .op = BLK_OP_WRITE_ZEROES, .offset = 16384, .len = 8192 };
	cr_assert_eq(run(be, &io), 0);
	io = (struct blk_io){ .op = BLK_OP_DISCARD, .offset = 32768, .len = 4096 };
	cr_assert_eq(run(be, &io), 0);
	io = (struct blk_io){ .op = BLK_OP_WRITE_ZEROES, .unmap = true, .offset = 40960, .len = 4096 };
	cr_assert_eq(run(be, &io), 0);
	cr_assert_eq(pread(fd, chk, 4096, 16384 + 4096), 4096);
	for (int i = 0; i < 4096; i++)
		cr_assert_eq(chk[i], 0);
	cr_assert_eq(pread(fd, chk, 4096, 40960), 4096);
	for (int i = 0; i < 4096; i++)
		cr_assert_eq(chk[i], 0);
	struct stat st;
	fstat(fd, &st);
	cr_assert_eq(st.st_size, 64 * 1024, "size kept");
	close(fd);

	io = (struct blk_io){ .op = BLK_OP_READ, .offset = 64 * 1024 - 512, .len = 4096, .iov = iov, .iovcnt = 2 };
	cr_assert_eq(run(be, &io), -ERANGE);
	io = (struct blk_io){ .op = BLK_OP_READ, .offset = UINT64_MAX - 100, .len = 4096, .iov = iov, .iovcnt = 2 };
	cr_assert_eq(run(be, &io), -ERANGE);
	blk_close(be);

	cr_assert_eq(blk_open(&be, path, true, engine), 0);
	io = (struct blk_io){ .op = BLK_OP_WRITE, .offset = 0, .len = 4096, .iov = iov, .iovcnt = 2 };
	cr_assert_eq(run(be, &io), -EROFS);
	io = (struct blk_io){ .op = BLK_OP_DISCARD, .offset = 0, .len = 4096 };
	cr_assert_eq(run(be, &io), -EROFS);
	blk_close(be);
	unlink(path);
}

Test(block, io_sync) { engine_io(BLK_ENGINE_SYNC); }
Test(block, io_threads) { engine_io(BLK_ENGINE_THREADS); }
Test(block, io_uring) { engine_io(BLK_ENGINE_URING); }

Test(block, engine_names)
{
	enum blk_engine e;
	cr_assert_eq(blk_engine_parse("uring", &e), 0);
	cr_assert_eq(e, BLK_ENGINE_URING);
	cr_assert_str_eq(blk_engine_name(BLK_ENGINE_THREADS), "threads");
	cr_assert_eq(blk_engine_parse("URING", &e), -EINVAL);
}

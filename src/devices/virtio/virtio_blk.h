/* virtio-blk (virtio 1.2, section 5.2): one request queue over a block
 * backend. The notify handler (a vCPU thread) pops and checks requests and
 * hands them to the backend; completions, on the backend's threads, write
 * the status byte, push the used element and raise the queue interrupt. */
#ifndef KITE_DEVICES_VIRTIO_VIRTIO_BLK_H
#define KITE_DEVICES_VIRTIO_VIRTIO_BLK_H

#include <stdint.h>

#include "backends/block/block.h"
#include "devices/virtio/virtio.h"

/* Feature bits (5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_GEOMETRY     4
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_TOPOLOGY     10
#define VIRTIO_BLK_F_CONFIG_WCE   11
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status values (5.2.6). */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_DWZ_F_UNMAP 1

#define VIRTIO_BLK_QUEUE_SIZE 256
#define VIRTIO_BLK_SEG_MAX (VIRTIO_BLK_QUEUE_SIZE - 2)  /* data segments */
#define VIRTIO_BLK_SIZE_MAX (1u << 22)                  /* bytes per segment */
#define VIRTIO_BLK_MAX_DWZ_SECTORS (1u << 22)           /* 2 GiB per discard/write-zeroes */

/* Byte offsets in the config space (5.2.4), little-endian fields. */
#define VIRTIO_BLK_CFG_CAPACITY        0
#define VIRTIO_BLK_CFG_SIZE_MAX        8
#define VIRTIO_BLK_CFG_SEG_MAX         12
#define VIRTIO_BLK_CFG_BLK_SIZE        20
#define VIRTIO_BLK_CFG_NUM_QUEUES      34
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS 36
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG     40
#define VIRTIO_BLK_CFG_DISCARD_ALIGN       44
#define VIRTIO_BLK_CFG_MAX_WZ_SECTORS      48
#define VIRTIO_BLK_CFG_MAX_WZ_SEG          52
#define VIRTIO_BLK_CFG_WZ_MAY_UNMAP        56
#define VIRTIO_BLK_CONFIG_LEN              60

struct virtio_blk;

/* Create a virtio-blk device on an open backend (which it then owns).
 * `id` is the serial GET_ID returns (at most 20 bytes are used). */
int virtio_blk_create(struct virtio_blk **out, const struct guest_memory *mem,
		      struct blk_backend *be, const char *id);
/* Open the disk a --disk option describes and create its device: the
 * backend with the configured engine (read-only when asked), serial = id. */
int virtio_blk_create_from_config(struct virtio_blk **out, const struct guest_memory *mem,
				  const struct disk_config *cfg);
void virtio_blk_destroy(struct virtio_blk *blk);
struct virtio_device *virtio_blk_vdev(struct virtio_blk *blk);

/* Wait until no request is in flight (before save, in tests). */
void virtio_blk_drain(struct virtio_blk *blk);
/* Replace the backing file of a live disk (the API's PATCH /drives): waits
 * for in-flight requests, switches, updates the capacity and sends a
 * config-change interrupt. The caller must keep queue notifications from
 * running meanwhile (the VM's vCPUs paused). *old gets the previous
 * backend for the caller to close. -EINVAL when read-only-ness differs. */
int virtio_blk_swap_backend(struct virtio_blk *blk, struct blk_backend *be,
			    struct blk_backend **old);
/* Requests popped and not yet completed. */
unsigned virtio_blk_in_flight(struct virtio_blk *blk);

/* Save/restore (the device is drained first). See virtio_save. */
size_t virtio_blk_save(struct virtio_blk *blk, void *buf, size_t len);
int virtio_blk_restore(struct virtio_blk *blk, const void *buf, size_t len);

#endif

/* storage_int.h - the storage root and the file helpers that storage.c shares with
 * storage_lock.c and storage_list.c; nothing outside those three files includes it. */
#ifndef MOAT_ACME_STORAGE_INT_H
#define MOAT_ACME_STORAGE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acme_int.h"

/* Owned by the caller of acme_storage_open; acme_storage_free releases it. */
struct acme_storage {
    char *root;           /* canonical absolute path, for listings and messages */
    int root_fd;          /* every path is opened relative to this */
    int64_t temp_max_age; /* seconds; only tests lower it */
    uint64_t host_tag;    /* this boot and pid namespace, written into temp names */
};

/* fsync of a directory; a file system that cannot sync one (EINVAL) is no failure. */
int acme_storage_fsync_dir(int dirfd);

/* Opens the directory holding rel (a path checked by the caller), creating missing ones on
 * the way (0700) when create is set. Returns the descriptor (the caller closes it) or
 * -errno; *base is rel's last component, pointing into rel. */
int acme_storage_open_parent(const struct acme_storage *st, const char *rel, bool create,
                             const char **base);

/* The atomic write of base in dirfd: temp file, write, fsync, rename, fsync of dirfd.
 * Cleans left-over temp files in dirfd first. 0 or -errno. */
int acme_storage_write_at(const struct acme_storage *st, int dirfd, const char *base,
                          const void *data, size_t len, int mode);

/* Writes all of p to fd, retrying on EINTR. 0 or -errno. */
int acme_storage_write_all(int fd, const uint8_t *p, size_t len);

/* Reads an open regular file whole, up to max bytes (-EFBIG above), into a malloc'd,
 * NUL-terminated buffer. -EISDIR for a directory, -EINVAL for anything else not regular. */
int acme_storage_read_fd(int fd, size_t max, char **data, size_t *len);

#endif

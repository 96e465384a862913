/* storage_lock.c - the per-name issuance locks in the shared storage: lock files created
 * with O_EXCL, refreshed by their owner, and taken over when stale.
 *
 * A lock is locks/<namekey>.lock holding {"owner":..,"updated":..}. Instances on several
 * hosts may contend for one; rename, link and O_EXCL create (atomic on NFS too) decide who
 * wins, so no two contenders can both take over the same stale lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "storage_int.h"

#define STORAGE_LOCK_READ_MAX 4096
#define STORAGE_OWNER_MAX 256
#define STORAGE_LOCK_TRIES 3

/* What a lock file says. updated falls back to the file's mtime when it cannot be parsed
 * (a holder that crashed between creating and writing it). */
struct lock_info {
    bool readable;
    char owner[STORAGE_OWNER_MAX + 1];
    int64_t updated;
    int64_t mtime;
};

static int do_err(void) { return errno > 0 ? -errno : -EIO; }

static bool do_lock_parse(const char *text, size_t len, struct lock_info *li)
{
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *owner = cJSON_GetObjectItemCaseSensitive(root, "owner");
    const cJSON *updated = cJSON_GetObjectItemCaseSensitive(root, "updated");
    bool ok = cJSON_IsString(owner) && cJSON_IsNumber(updated) &&
              strlen(owner->valuestring) <= STORAGE_OWNER_MAX;
    if (ok) {
        memcpy(li->owner, owner->valuestring, strlen(owner->valuestring) + 1);
        li->updated = (int64_t)updated->valuedouble;
    }
    cJSON_Delete(root);
    return ok;
}

/* Reads the lock file name in dirfd. 0 or -errno (-ENOENT when there is none). */
static int do_lock_read(int dirfd, const char *name, struct lock_info *li)
{
    memset(li, 0, sizeof(*li));
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return do_err();
    }
    struct stat sb;
    char *text = NULL;
    size_t len = 0;
    int rc = fstat(fd, &sb) == 0 ? 0 : do_err();
    if (rc == 0) {
        li->mtime = (int64_t)sb.st_mtime;
        rc = acme_storage_read_fd(fd, STORAGE_LOCK_READ_MAX, &text, &len);
    }
    (void)close(fd); /* read-only: nothing to lose */
    if (rc == -EFBIG || rc == -EINVAL) {
        rc = 0; /* not a lock file we wrote: judge it by its mtime */
    }
    li->readable = text != NULL && do_lock_parse(text, len, li);
    if (!li->readable) {
        li->updated = li->mtime;
    }
    free(text);
    return rc;
}

static char *do_lock_json(const char *owner, int64_t now)
{
    cJSON *root = cJSON_CreateObject();
    char *text = NULL;
    if (root != NULL && cJSON_AddStringToObject(root, "owner", owner) != NULL &&
        cJSON_AddNumberToObject(root, "updated", (double)now) != NULL) {
        text = cJSON_PrintUnformatted(root);
    }
    cJSON_Delete(root);
    return text;
}

/* Creates the lock file with O_EXCL: -EEXIST when someone holds it. A crash before the JSON
 * is written leaves an empty file, which counts from its mtime and so goes stale. */
static int do_lock_create(int dirfd, const char *name, const char *owner)
{
    char *json = do_lock_json(owner, time(NULL));
    if (json == NULL) {
        return -ENOMEM;
    }
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    int rc = fd >= 0 ? 0 : do_err();
    if (rc == 0) {
        rc = fchmod(fd, 0644) == 0 ? 0 : do_err();
        if (rc == 0) {
            rc = acme_storage_write_all(fd, (const uint8_t *)json, strlen(json));
        }
        if (rc == 0 && fsync(fd) != 0) {
            rc = do_err();
        }
        if (close(fd) != 0 && errno != EINTR && rc == 0) {
            rc = do_err();
        }
        rc = rc == 0 ? acme_storage_fsync_dir(dirfd) : rc;
        if (rc != 0) {
            (void)unlinkat(dirfd, name, 0); /* ours, half made: it would go stale anyway */
        }
    }
    free(json);
    return rc;
}

/* When the holder last showed it was alive. An "updated" ahead of our clock by more than
 * stale_s comes from a host with a wrong clock and would keep the lock forever; the file's
 * mtime, set by the file server, is trusted then. Whole seconds: strictly more than stale_s
 * seconds must have passed. */
static bool do_lock_stale(const struct lock_info *li, unsigned stale_s, int64_t now)
{
    int64_t last = li->updated;
    if (last > now + (int64_t)stale_s) {
        last = li->mtime;
    }
    return now - last > (int64_t)stale_s;
}

/* Settles a grabbed lock file: drops it, or puts it back with link(), which never replaces a
 * lock created meanwhile (its holder then keeps it, and the one we put back has lost). */
static int do_lock_settle(int dirfd, const char *name, const char *tmp, bool drop)
{
    if (!drop && linkat(dirfd, tmp, dirfd, name, 0) != 0 && errno != EEXIST) {
        /* No hard links on this file system: rename it back, replacing at worst a lock
         * created in the last instant. */
        return renameat(dirfd, tmp, dirfd, name) == 0 ? acme_storage_fsync_dir(dirfd) : do_err();
    }
    if (unlinkat(dirfd, tmp, 0) != 0 && errno != ENOENT) {
        return do_err();
    }
    return acme_storage_fsync_dir(dirfd);
}

/* Renames the lock file to a unique temp name. rename() is atomic: of several contenders
 * only one moves this very file (the others get -ENOENT), and that one then reads and
 * judges the file where nobody else looks; do_lock_settle finishes. */
static int do_lock_grab(const struct acme_storage *st, int dirfd, const char *name, char *tmp,
                        size_t cap, struct lock_info *li)
{
    int rc = acme_storage_temp_name(st, name, tmp, cap);
    if (rc < 0) {
        return rc;
    }
    if (renameat(dirfd, name, dirfd, tmp) != 0) {
        return do_err();
    }
    rc = do_lock_read(dirfd, tmp, li);
    if (rc < 0 && rc != -ENOENT) { /* cannot judge it: put it back as it was */
        int back = do_lock_settle(dirfd, name, tmp, false);
        return back < 0 ? back : rc;
    }
    return rc; /* -ENOENT: a write's cleaning took it, so it is gone either way */
}

/* Opens locks/ and sets base to "<namekey>.lock". Returns the descriptor or -errno. */
static int do_lock_dir(const struct acme_storage *st, const char *name, const char *owner,
                       bool create, char *base, size_t cap)
{
    char rel[NAME_MAX + 16];
    char key[NAME_MAX + 1];
    if (owner == NULL || owner[0] == '\0' || strlen(owner) > STORAGE_OWNER_MAX ||
        acme_storage_name_key(name, key, sizeof(key)) != 0) {
        return -EINVAL;
    }
    int n = snprintf(rel, sizeof(rel), "locks/%s.lock", key);
    if (n < 0 || (size_t)n >= sizeof(rel) || (size_t)n - 6 >= cap) {
        return -ENAMETOOLONG;
    }
    const char *b = "";
    int dirfd = acme_storage_open_parent(st, rel, create, &b);
    if (dirfd >= 0) {
        memcpy(base, b, strlen(b) + 1);
    }
    return dirfd;
}

/* One attempt at the lock: 0, -EBUSY, -EAGAIN (it vanished under us: try again) or -errno. */
static int do_lock_try(const struct acme_storage *st, int dirfd, const char *name,
                       const char *owner, unsigned stale_s)
{
    int rc = do_lock_create(dirfd, name, owner);
    if (rc != -EEXIST) {
        return rc;
    }
    struct lock_info li;
    int64_t now = time(NULL);
    rc = do_lock_read(dirfd, name, &li);
    if (rc < 0) {
        return rc == -ENOENT ? -EAGAIN : rc;
    }
    if (li.readable && strcmp(li.owner, owner) == 0) { /* ours already: refresh it */
        char *json = do_lock_json(owner, now);
        rc = json != NULL ? acme_storage_write_at(st, dirfd, name, json, strlen(json), 0644)
                          : -ENOMEM;
        free(json);
        return rc;
    }
    if (!do_lock_stale(&li, stale_s, now)) {
        return -EBUSY;
    }
    char tmp[NAME_MAX + 1];
    rc = do_lock_grab(st, dirfd, name, tmp, sizeof(tmp), &li);
    if (rc == 0) {
        /* Judge the file we moved, not the one we read: a contender may have replaced the
         * stale lock with its fresh one in between. */
        bool stale = do_lock_stale(&li, stale_s, now);
        rc = do_lock_settle(dirfd, name, tmp, stale);
        if (rc == 0 && !stale) {
            return -EBUSY;
        }
    }
    if (rc < 0 && rc != -ENOENT) {
        return rc;
    }
    /* The stale file is gone (we or a contender removed it): the one O_EXCL create that
     * succeeds wins; the others see EEXIST. */
    rc = do_lock_create(dirfd, name, owner);
    return rc == -EEXIST ? -EBUSY : rc;
}

int acme_storage_lock(struct acme_storage *st, const char *name, const char *owner,
                      unsigned stale_s)
{
    char base[NAME_MAX + 1];
    int dirfd = do_lock_dir(st, name, owner, true, base, sizeof(base));
    if (dirfd < 0) {
        return dirfd;
    }
    int rc = -EBUSY;
    for (int i = 0; i < STORAGE_LOCK_TRIES; i++) {
        rc = do_lock_try(st, dirfd, base, owner, stale_s);
        if (rc != -EAGAIN) {
            break;
        }
    }
    (void)close(dirfd); /* a directory, already synced */
    return rc == -EAGAIN ? -EBUSY : rc;
}

/* The check and the rename are not one step: a contender that found our lock stale could
 * take it over in between, and we would overwrite its lock. Its next refresh then fails
 * with -EPERM, so the overlap lasts one refresh period at most. */
int acme_storage_lock_refresh(struct acme_storage *st, const char *name, const char *owner)
{
    char base[NAME_MAX + 1];
    int dirfd = do_lock_dir(st, name, owner, false, base, sizeof(base));
    if (dirfd < 0) {
        return dirfd == -ENOENT ? -EPERM : dirfd;
    }
    struct lock_info li;
    int rc = do_lock_read(dirfd, base, &li);
    if (rc == -ENOENT || (rc == 0 && (!li.readable || strcmp(li.owner, owner) != 0))) {
        rc = -EPERM;
    }
    if (rc == 0) {
        char *json = do_lock_json(owner, time(NULL));
        rc = json != NULL ? acme_storage_write_at(st, dirfd, base, json, strlen(json), 0644)
                          : -ENOMEM;
        free(json);
    }
    (void)close(dirfd); /* a directory, already synced */
    return rc;
}

/* 0 when our lock was removed, -EPERM when another owner holds it, -ENOENT when there is
 * none. The file is moved away before the final check, so a lock taken over in between
 * is put back, not deleted. */
int acme_storage_unlock(struct acme_storage *st, const char *name, const char *owner)
{
    char base[NAME_MAX + 1];
    int dirfd = do_lock_dir(st, name, owner, false, base, sizeof(base));
    if (dirfd < 0) {
        return dirfd;
    }
    struct lock_info li;
    char tmp[NAME_MAX + 1];
    int rc = do_lock_read(dirfd, base, &li);
    if (rc == 0 && (!li.readable || strcmp(li.owner, owner) != 0)) {
        rc = -EPERM;
    }
    if (rc == 0) {
        rc = do_lock_grab(st, dirfd, base, tmp, sizeof(tmp), &li);
    }
    if (rc == 0) {
        bool mine = li.readable && strcmp(li.owner, owner) == 0;
        rc = do_lock_settle(dirfd, base, tmp, mine);
        rc = rc == 0 && !mine ? -EPERM : rc;
    }
    (void)close(dirfd); /* a directory, already synced */
    return rc;
}

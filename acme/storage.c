/* storage.c - the directory several moat instances share for ACME accounts, certificates,
 * pending challenges and per-name issuance locks: atomic writes, O_EXCL locks that can be
 * taken over when stale, and a listing of the stored certificates.
 *
 * Every path is opened relative to a descriptor of the root, so it resolves the same way
 * however the root was named. A storage holds no state that calls change, so several
 * threads may use one at once; the instances that share the directory coordinate only
 * through the file system (rename, link and O_EXCL create, which NFS also makes atomic).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "acme_int.h"

#define STORAGE_TEMP_MAX_AGE 3600    /* seconds after which anyone's temp file is left over */
#define STORAGE_READ_MAX (32u << 20) /* nothing we store comes near; bigger is not ours */
#define STORAGE_LOCK_READ_MAX 4096
#define STORAGE_OWNER_MAX 256
#define STORAGE_KEY_MAX (NAME_MAX - 5) /* room for ".json" or ".lock" after a name key */
#define STORAGE_CA_KEY_MAX 200
#define STORAGE_TEMP_BASE_MAX 64 /* how much of the target's name a temp name keeps */
#define STORAGE_LOCK_TRIES 3
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

/* Owned by the caller of acme_storage_open; acme_storage_free releases it. */
struct acme_storage {
    char *root;           /* canonical absolute path, for listings and messages */
    int root_fd;          /* every path is opened relative to this */
    int64_t temp_max_age; /* seconds; only tests lower it */
    uint64_t host_tag;    /* this boot and pid namespace, written into temp names */
};

/* What a lock file says. updated falls back to the file's mtime when it cannot be parsed
 * (a holder that crashed between creating and writing it). */
struct lock_info {
    bool readable;
    char owner[STORAGE_OWNER_MAX + 1];
    int64_t updated;
    int64_t mtime;
};

/* The list acme_storage_list builds; the array becomes the caller's. */
struct cert_vec {
    struct acme_stored_cert *items;
    size_t n;
    size_t cap;
};

static int do_err(void) { return errno > 0 ? -errno : -EIO; }

static uint64_t do_fnv(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* A temp file may be judged by its writer's pid only where that pid means the same process:
 * on a shared file system, pid 1234 on another host says nothing about ours. The tag folds
 * this boot's id, our pid namespace and the host name together. */
static uint64_t do_host_tag(void)
{
    uint64_t h = FNV_OFFSET;
    char buf[256];
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            h = do_fnv(h, buf, (size_t)n);
        }
        (void)close(fd); /* read-only: nothing to lose */
    }
    ssize_t n = readlink("/proc/self/ns/pid", buf, sizeof(buf));
    if (n > 0) {
        h = do_fnv(h, buf, (size_t)n);
    }
    if (gethostname(buf, sizeof(buf)) == 0) {
        buf[sizeof(buf) - 1] = '\0';
        h = do_fnv(h, buf, strlen(buf));
    }
    return h;
}

/* Some file systems cannot sync a directory (EINVAL); their renames are as durable as they
 * get without it, so that is no failure. */
static int do_fsync_dir(int dirfd)
{
    if (fsync(dirfd) != 0 && errno != EINVAL && errno != EOPNOTSUPP) {
        return do_err();
    }
    return 0;
}

/* mkdir -p with 0700 for the root itself and its missing parents. */
static int do_mkdirs(const char *path)
{
    size_t len = strlen(path);
    char *copy = strdup(path);
    if (copy == NULL) {
        return -ENOMEM;
    }
    int rc = 0;
    for (size_t i = 1; i <= len && rc == 0; i++) {
        if (copy[i] != '/' && copy[i] != '\0') {
            continue;
        }
        char saved = copy[i];
        copy[i] = '\0';
        if (mkdir(copy, 0700) == 0) {
            rc = chmod(copy, 0700) == 0 ? 0 : do_err(); /* the umask must not weaken it */
        } else if (errno != EEXIST) {
            rc = do_err();
        }
        copy[i] = saved;
    }
    free(copy);
    return rc;
}

static void do_fail(char *err, size_t errlen, const char *root, const char *what, int rc)
{
    if (err != NULL && errlen > 0) {
        int n = snprintf(err, errlen, "storage %s: %s: %s", root, what, strerror(-rc));
        (void)n; /* a cut message is still a message */
    }
}

struct acme_storage *acme_storage_open(const char *root, char *err, size_t errlen)
{
    if (root == NULL || root[0] == '\0') {
        do_fail(err, errlen, "\"\"", "no directory given", -EINVAL);
        return NULL;
    }
    int rc = do_mkdirs(root);
    if (rc < 0) {
        do_fail(err, errlen, root, "cannot create", rc);
        return NULL;
    }
    struct acme_storage *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        do_fail(err, errlen, root, "out of memory", -ENOMEM);
        return NULL;
    }
    st->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->root_fd < 0) {
        do_fail(err, errlen, root, "cannot open", do_err());
        free(st);
        return NULL;
    }
    st->root = realpath(root, NULL);
    if (st->root == NULL) {
        do_fail(err, errlen, root, "realpath", do_err());
    } else if (faccessat(st->root_fd, ".", W_OK | X_OK, AT_EACCESS) != 0) {
        do_fail(err, errlen, root, "not writable", do_err());
    } else {
        st->temp_max_age = STORAGE_TEMP_MAX_AGE;
        st->host_tag = do_host_tag();
        return st;
    }
    acme_storage_free(st);
    return NULL;
}

void acme_storage_free(struct acme_storage *st)
{
    if (st == NULL) {
        return;
    }
    if (st->root_fd >= 0) {
        (void)close(st->root_fd); /* a directory: nothing to flush */
    }
    free(st->root);
    free(st);
}

const char *acme_storage_root(const struct acme_storage *st) { return st->root; }

void acme_storage_set_temp_max_age(struct acme_storage *st, unsigned seconds)
{
    st->temp_max_age = seconds;
}

/* ---- names -------------------------------------------------------------------------- */

static bool do_ca_char(char *c)
{
    if (*c >= 'A' && *c <= 'Z') {
        *c = (char)(*c - 'A' + 'a');
    }
    return (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' ||
           *c == '-';
}

/* Appends host (':' of a port or of an IPv6 literal becomes '_') and then the path with '/'
 * turned into '-', keeping only [a-z0-9._-]. Returns the length written. */
static size_t do_ca_filter(const char *host, size_t host_len, const char *path, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < host_len; i++) {
        char c = host[i];
        if (c == ':') {
            c = '_';
        }
        if (do_ca_char(&c)) {
            out[o++] = c;
        }
    }
    while (*path == '/') {
        path++;
    }
    size_t path_len = strcspn(path, "#");
    while (path_len > 0 && path[path_len - 1] == '/') {
        path_len--;
    }
    if (path_len > 0) {
        out[o++] = '-';
    }
    for (size_t i = 0; i < path_len; i++) {
        char c = path[i];
        if (c == '/') {
            c = '-';
        }
        if (do_ca_char(&c)) {
            out[o++] = c;
        }
    }
    out[o] = '\0';
    return o;
}

char *acme_storage_ca_key(const char *directory_url)
{
    if (directory_url == NULL) {
        return NULL;
    }
    const char *p = strstr(directory_url, "://");
    p = p != NULL ? p + 3 : directory_url;
    size_t auth_len = strcspn(p, "/?#");
    const char *at = memchr(p, '@', auth_len);
    if (at != NULL) { /* user info is no part of which CA this is */
        auth_len -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    char *out = malloc(strlen(directory_url) + 2);
    if (out == NULL) {
        return NULL;
    }
    size_t len = do_ca_filter(p, auth_len, p + auth_len, out);
    /* "", "." or ".." would name the parent; a leading dot would hide it among temp files. */
    if (len == 0 || out[0] == '.') {
        free(out);
        return NULL;
    }
    if (len > STORAGE_CA_KEY_MAX) { /* too long for a file name: keep it unique with a hash */
        uint64_t h = do_fnv(FNV_OFFSET, directory_url, strlen(directory_url));
        int n = snprintf(out + STORAGE_CA_KEY_MAX - 17, 18, "-%016llx", (unsigned long long)h);
        if (n != 17) {
            free(out);
            return NULL;
        }
    }
    return out;
}

int acme_storage_name_key(const char *name, char *out, size_t cap)
{
    if (name == NULL || out == NULL) {
        return -1;
    }
    const char *prefix = "";
    if (name[0] == '*' && name[1] == '.') {
        prefix = "wildcard_.";
        name += 2;
    }
    size_t plen = strlen(prefix);
    size_t n = strlen(name);
    if (n > 0 && name[n - 1] == '.') { /* "example.com." is example.com */
        n--;
    }
    if (n == 0 || name[0] == '.' || strstr(name, "..") != NULL || plen + n > STORAGE_KEY_MAX ||
        plen + n + 1 > cap) {
        return -1;
    }
    memcpy(out, prefix, plen);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        /* ':' because ACME also certifies IPv6 addresses */
        if (!do_ca_char(&c) && c != ':') {
            return -1;
        }
        out[plen + i] = c;
    }
    out[plen + n] = '\0';
    return 0;
}

/* A path component given by a caller: not empty, no '/', no control characters, and no
 * leading dot (that rules out "." and "..", and temp files all start with one). */
static bool do_component_ok(const char *s)
{
    if (s == NULL || s[0] == '\0' || s[0] == '.' || strlen(s) > NAME_MAX) {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (*s == '/' || (unsigned char)*s < 0x20 || *s == 0x7f) {
            return false;
        }
    }
    return true;
}

int acme_storage_account_path(const char *ca_key, const char *account, const char *file, char *out,
                              size_t cap)
{
    if (!do_component_ok(ca_key) || !do_component_ok(account) || !do_component_ok(file)) {
        return -1;
    }
    int n = snprintf(out, cap, "accounts/%s/%s/%s", ca_key, account, file);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* name may be a host name or already a name key: the key of a key is itself. ext may come
 * with or without its dot. */
int acme_storage_cert_path(const char *ca_key, const char *name, const char *ext, char *out,
                           size_t cap)
{
    char key[NAME_MAX + 1];
    if (!do_component_ok(ca_key) || ext == NULL ||
        acme_storage_name_key(name, key, sizeof(key)) != 0) {
        return -1;
    }
    ext += ext[0] == '.' ? 1 : 0;
    if (!do_component_ok(ext) || strchr(ext, '.') != NULL || strlen(ext) > 4) {
        return -1;
    }
    int n = snprintf(out, cap, "certificates/%s/%s/%s.%s", ca_key, key, key, ext);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

int acme_storage_challenge_path(const char *name, char *out, size_t cap)
{
    char key[NAME_MAX + 1];
    if (acme_storage_name_key(name, key, sizeof(key)) != 0) {
        return -1;
    }
    int n = snprintf(out, cap, "challenges/%s.json", key);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* ---- files -------------------------------------------------------------------------- */

/* A path we are given: relative, no empty component, no component with a leading dot (no
 * "." or "..", and never a temp file), no control characters, no trailing '/'. */
static bool do_relpath_ok(const char *rel)
{
    if (rel == NULL || rel[0] == '\0' || strlen(rel) >= PATH_MAX) {
        return false;
    }
    bool start = true;
    for (const char *p = rel; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || (start && (c == '.' || c == '/'))) {
            return false;
        }
        start = c == '/';
    }
    return !start;
}

/* Makes the directory comp in dirfd (0700) unless it exists. A new directory is synced into
 * its parent, or a crash could lose the entry of a file renamed into it later. */
static int do_mkdir_in(int dirfd, const char *comp)
{
    if (mkdirat(dirfd, comp, 0700) != 0) {
        return errno == EEXIST ? 0 : do_err();
    }
    if (fchmodat(dirfd, comp, 0700, 0) != 0) { /* the umask must not change it */
        return do_err();
    }
    return do_fsync_dir(dirfd);
}

/* Opens the directory holding rel, creating missing ones on the way when create is set.
 * Returns the descriptor (the caller closes it) or -errno; *base is rel's last component. */
static int do_open_parent(const struct acme_storage *st, const char *rel, bool create,
                          const char **base)
{
    int cur = openat(st->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cur < 0) {
        return do_err();
    }
    const char *p = rel;
    for (const char *slash = strchr(p, '/'); slash != NULL; slash = strchr(p, '/')) {
        char comp[NAME_MAX + 1];
        size_t n = (size_t)(slash - p);
        if (n > NAME_MAX) {
            (void)close(cur);
            return -ENAMETOOLONG;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        int rc = create ? do_mkdir_in(cur, comp) : 0;
        int next = rc == 0 ? openat(cur, comp, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (rc == 0 && next < 0) {
            rc = do_err();
        }
        (void)close(cur); /* a directory: nothing to flush */
        if (rc < 0) {
            return rc;
        }
        cur = next;
        p = slash + 1;
    }
    *base = p;
    return cur;
}

int acme_storage_temp_name(const struct acme_storage *st, const char *base, char *out, size_t cap)
{
    uint64_t r;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        return do_err();
    }
    int n = snprintf(out, cap, ".%.*s.tmp.%ld.%016llx%016llx", STORAGE_TEMP_BASE_MAX, base,
                     (long)getpid(), (unsigned long long)st->host_tag, (unsigned long long)r);
    return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

static int do_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Recognises ".<base>.tmp.<pid>.<tag:16 hex><random:16 hex>" and takes pid and tag out. */
static bool do_parse_temp(const char *name, pid_t *pid, uint64_t *tag)
{
    const char *mark = NULL;
    for (const char *p = strstr(name, ".tmp."); p != NULL; p = strstr(p + 1, ".tmp.")) {
        mark = p;
    }
    if (name[0] != '.' || mark == NULL || mark[5] < '0' || mark[5] > '9') {
        return false;
    }
    char *end;
    errno = 0;
    long v = strtol(mark + 5, &end, 10);
    if (errno != 0 || *end != '.' || v <= 0 || v > INT_MAX || strlen(end + 1) != 32) {
        return false;
    }
    uint64_t t = 0;
    for (int i = 0; i < 32; i++) {
        int d = do_hex(end[1 + i]);
        if (d < 0) {
            return false;
        }
        t = i < 16 ? t << 4 | (uint64_t)d : t;
    }
    *pid = (pid_t)v;
    *tag = t;
    return true;
}

/* A temp file is left over when it is older than the limit (whoever wrote it, here or on
 * another host, would have finished long ago), or when its writer ran in this boot and pid
 * namespace and no longer exists. A live writer's file is young and its pid alive. */
static bool do_temp_left_over(const struct acme_storage *st, int dirfd, const char *name,
                              int64_t now)
{
    pid_t pid;
    uint64_t tag;
    struct stat sb;
    if (!do_parse_temp(name, &pid, &tag) || fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(sb.st_mode)) {
        return false;
    }
    if (now - (int64_t)sb.st_mtime >= st->temp_max_age) {
        return true;
    }
    return tag == st->host_tag && kill(pid, 0) != 0 && errno == ESRCH;
}

/* Best effort: a failure here must not fail the write that called it; the next one tries
 * again. */
static void do_clean_temps(const struct acme_storage *st, int dirfd)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        (void)close(fd);
        return;
    }
    int64_t now = time(NULL);
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (do_temp_left_over(st, dirfd, e->d_name, now)) {
            (void)unlinkat(dirfd, e->d_name, 0); /* another writer may have been first */
        }
    }
    (void)closedir(d);
}

static int do_write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? do_err() : -EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int do_write_temp(int dirfd, const char *tmp, const void *data, size_t len, int mode)
{
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
    if (fd < 0) {
        return do_err();
    }
    int rc = fchmod(fd, (mode_t)mode) == 0 ? 0 : do_err(); /* the umask must not change it */
    if (rc == 0) {
        rc = do_write_all(fd, data, len);
    }
    if (rc == 0 && fsync(fd) != 0) {
        rc = do_err();
    }
    /* NFS reports write errors at close; EINTR still closed it, and fsync already ran. */
    if (close(fd) != 0 && errno != EINTR && rc == 0) {
        rc = do_err();
    }
    if (rc != 0) {
        (void)unlinkat(dirfd, tmp, 0); /* or a later write cleans it */
    }
    return rc;
}

/* The atomic write of base in dirfd: the temp file is complete and synced before rename
 * makes it visible, and the directory is synced so the rename survives a crash. */
static int do_write_at(const struct acme_storage *st, int dirfd, const char *base, const void *data,
                       size_t len, int mode)
{
    char tmp[NAME_MAX + 1];
    do_clean_temps(st, dirfd);
    int rc = acme_storage_temp_name(st, base, tmp, sizeof(tmp));
    if (rc == 0) {
        rc = do_write_temp(dirfd, tmp, data, len, mode);
    }
    if (rc == 0 && renameat(dirfd, tmp, dirfd, base) != 0) {
        rc = do_err();
        (void)unlinkat(dirfd, tmp, 0); /* or a later write cleans it */
    } else if (rc == 0) {
        rc = do_fsync_dir(dirfd);
    }
    return rc;
}

int acme_storage_write(struct acme_storage *st, const char *relpath, const void *data, size_t len,
                       int mode)
{
    if (!do_relpath_ok(relpath) || (data == NULL && len > 0) || (mode & ~0777) != 0) {
        return -EINVAL;
    }
    const char *base;
    int dirfd = do_open_parent(st, relpath, true, &base);
    if (dirfd < 0) {
        return dirfd;
    }
    int rc = do_write_at(st, dirfd, base, data, len, mode);
    (void)close(dirfd); /* a directory, already synced */
    return rc;
}

/* Reads an open regular file whole, up to max bytes. */
static int do_read_fd(int fd, size_t max, char **data, size_t *len)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        return do_err();
    }
    if (!S_ISREG(sb.st_mode)) {
        return S_ISDIR(sb.st_mode) ? -EISDIR : -EINVAL;
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > max) {
        return -EFBIG;
    }
    size_t size = (size_t)sb.st_size;
    char *buf = malloc(size + 1);
    if (buf == NULL) {
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int rc = do_err();
            free(buf);
            return rc;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    *data = buf;
    *len = got;
    return 0;
}

int acme_storage_read(struct acme_storage *st, const char *relpath, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (!do_relpath_ok(relpath)) {
        return -EINVAL;
    }
    int fd = openat(st->root_fd, relpath, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return do_err();
    }
    int rc = do_read_fd(fd, STORAGE_READ_MAX, data, len);
    (void)close(fd); /* read-only: nothing to lose */
    return rc;
}

/* Returns -ENOENT when there was nothing to remove. */
int acme_storage_remove(struct acme_storage *st, const char *relpath)
{
    if (!do_relpath_ok(relpath)) {
        return -EINVAL;
    }
    const char *base;
    int dirfd = do_open_parent(st, relpath, false, &base);
    if (dirfd < 0) {
        return dirfd;
    }
    int rc = unlinkat(dirfd, base, 0) == 0 ? do_fsync_dir(dirfd) : do_err();
    (void)close(dirfd); /* a directory, already synced */
    return rc;
}

/* ---- locks -------------------------------------------------------------------------- */

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
        rc = do_read_fd(fd, STORAGE_LOCK_READ_MAX, &text, &len);
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
            rc = do_write_all(fd, (const uint8_t *)json, strlen(json));
        }
        if (rc == 0 && fsync(fd) != 0) {
            rc = do_err();
        }
        if (close(fd) != 0 && errno != EINTR && rc == 0) {
            rc = do_err();
        }
        rc = rc == 0 ? do_fsync_dir(dirfd) : rc;
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
        return renameat(dirfd, tmp, dirfd, name) == 0 ? do_fsync_dir(dirfd) : do_err();
    }
    if (unlinkat(dirfd, tmp, 0) != 0 && errno != ENOENT) {
        return do_err();
    }
    return do_fsync_dir(dirfd);
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
    int dirfd = do_open_parent(st, rel, create, &b);
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
        rc = json != NULL ? do_write_at(st, dirfd, name, json, strlen(json), 0644) : -ENOMEM;
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
        rc = json != NULL ? do_write_at(st, dirfd, base, json, strlen(json), 0644) : -ENOMEM;
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

/* ---- listing ------------------------------------------------------------------------ */

static int do_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void do_free_strs(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

static int do_push_str(char ***v, size_t *n, const char *s)
{
    char **grown = realloc(*v, (*n + 1) * sizeof(**v));
    if (grown == NULL) {
        return -ENOMEM;
    }
    *v = grown;
    grown[*n] = strdup(s);
    if (grown[*n] == NULL) {
        return -ENOMEM;
    }
    (*n)++;
    return 0;
}

/* The sub-directories of dirfd/sub, sorted; dot names (temp files, ".", "..") are skipped.
 * A missing sub is an empty list. */
static int do_subdirs(int dirfd, const char *sub, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int fd = openat(dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? 0 : do_err();
    }
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int rc = do_err();
        (void)close(fd);
        return rc;
    }
    int rc = 0;
    errno = 0;
    for (struct dirent *e = readdir(d); e != NULL && rc == 0; e = readdir(d)) {
        struct stat sb;
        if (e->d_name[0] != '.' && fstatat(fd, e->d_name, &sb, 0) == 0 && S_ISDIR(sb.st_mode)) {
            rc = do_push_str(out, n, e->d_name);
        }
        errno = 0;
    }
    if (rc == 0 && errno != 0) {
        rc = do_err();
    }
    (void)closedir(d); /* read-only: nothing to lose */
    if (rc < 0) {
        do_free_strs(*out, *n);
        *out = NULL;
        *n = 0;
        return rc;
    }
    if (*n > 1) {
        qsort(*out, *n, sizeof(**out), do_cmp_str);
    }
    return 0;
}

static int do_set_error(struct acme_stored_cert *c, const char *text)
{
    c->error = strdup(text);
    return c->error != NULL ? 0 : -ENOMEM;
}

/* The leaf is the first PEM block; the chain after it must parse too. NULL when corrupt. */
static X509 *do_parse_chain(const char *pem, size_t len)
{
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(pem, len > INT_MAX ? INT_MAX : (int)len);
    X509 *leaf = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    X509 *next = leaf != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    while (next != NULL) {
        X509_free(next);
        next = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    }
    uint32_t e = ERR_peek_last_error();
    bool clean_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    if (leaf != NULL && !clean_end) {
        X509_free(leaf);
        leaf = NULL;
    }
    ERR_clear_error();
    BIO_free(bio);
    return leaf;
}

static int do_cert_names(struct acme_stored_cert *c, X509 *leaf)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int rc = 0;
    for (size_t i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && rc == 0; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_DNS) {
            continue;
        }
        const ASN1_IA5STRING *s = gn->d.dNSName;
        char *name = strndup((const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
        rc = name != NULL ? do_push_str(&c->names, &c->n_names, name) : -ENOMEM;
        free(name);
    }
    GENERAL_NAMES_free(sans);
    return rc;
}

/* The issuer's CN, or its whole one-line DN when it has none. */
static int do_cert_issuer(struct acme_stored_cert *c, X509 *leaf)
{
    const X509_NAME *issuer = X509_get_issuer_name(leaf);
    int idx = X509_NAME_get_index_by_NID(issuer, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    if (idx >= 0) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(issuer, idx);
        if (ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e)) < 0) {
            utf8 = NULL;
        }
    }
    char *text = utf8 != NULL ? (char *)utf8 : X509_NAME_oneline(issuer, NULL, 0);
    c->issuer = text != NULL ? strdup(text) : NULL;
    OPENSSL_free(text);
    return c->issuer != NULL ? 0 : -ENOMEM;
}

static int do_cert_not_after(struct acme_stored_cert *c, X509 *leaf)
{
    int64_t now = time(NULL);
    ASN1_TIME *from = ASN1_TIME_set(NULL, (time_t)now);
    int days = 0;
    int secs = 0;
    int ok = from != NULL && ASN1_TIME_diff(&days, &secs, from, X509_get0_notAfter(leaf));
    ASN1_TIME_free(from);
    if (!ok) {
        return do_set_error(c, "bad notAfter time");
    }
    c->not_after = now + (int64_t)days * 86400 + secs;
    return 0;
}

/* Checks <dir>.key next to the certificate against the leaf's public key. */
static int do_cert_key(struct acme_storage *st, struct acme_stored_cert *c, const char *ca,
                       const char *dir, X509 *leaf)
{
    char rel[PATH_MAX];
    int n = snprintf(rel, sizeof(rel), "certificates/%s/%s/%s.key", ca, dir, dir);
    if (n < 0 || (size_t)n >= sizeof(rel)) {
        return do_set_error(c, "key path too long");
    }
    char *pem = NULL;
    size_t len = 0;
    int rc = acme_storage_read(st, rel, &pem, &len);
    if (rc < 0) {
        return do_set_error(c, rc == -ENOENT ? "missing key" : "unreadable key file");
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    EVP_PKEY *pub = X509_get_pubkey(leaf);
    if (key == NULL) {
        rc = do_set_error(c, "corrupt key file");
    } else if (pub == NULL || EVP_PKEY_cmp(pub, key) != 1) {
        rc = do_set_error(c, "key does not match");
    }
    ERR_clear_error();
    EVP_PKEY_free(pub);
    EVP_PKEY_free(key);
    BIO_free(bio);
    OPENSSL_cleanse(pem, len);
    free(pem);
    return rc;
}

/* The name a directory stands for: the inverse of acme_storage_name_key. */
static char *do_dir_name(const char *dir)
{
    if (strncmp(dir, "wildcard_.", 10) != 0) {
        return strdup(dir);
    }
    size_t cap = strlen(dir + 10) + 3;
    char *name = malloc(cap);
    if (name != NULL && snprintf(name, cap, "*.%s", dir + 10) < 0) {
        free(name);
        name = NULL;
    }
    return name;
}

/* Fills c from certificates/<ca>/<dir>/<dir>.crt (already read into pem). */
static int do_cert_fill(struct acme_storage *st, struct acme_stored_cert *c, const char *ca,
                        const char *dir, const char *pem, size_t len)
{
    X509 *leaf = do_parse_chain(pem, len);
    if (leaf == NULL) {
        return do_set_error(c, "corrupt certificate file");
    }
    int rc = do_cert_names(c, leaf);
    if (rc == 0) {
        rc = do_cert_issuer(c, leaf);
    }
    if (rc == 0) {
        rc = do_cert_not_after(c, leaf);
    }
    if (rc == 0 && c->error == NULL) {
        rc = do_cert_key(st, c, ca, dir, leaf);
    }
    X509_free(leaf);
    return rc;
}

static struct acme_stored_cert *do_vec_push(struct cert_vec *v)
{
    if (v->n == v->cap) {
        size_t cap = v->cap == 0 ? 8 : v->cap * 2;
        struct acme_stored_cert *grown = realloc(v->items, cap * sizeof(*grown));
        if (grown == NULL) {
            return NULL;
        }
        v->items = grown;
        v->cap = cap;
    }
    struct acme_stored_cert *c = &v->items[v->n++];
    memset(c, 0, sizeof(*c));
    return c;
}

/* Adds certificates/<ca>/<dir> to v when it holds <dir>.crt; a directory without one is
 * an issuance in progress and is skipped. */
static int do_list_one(struct acme_storage *st, struct cert_vec *v, const char *ca, const char *dir)
{
    char rel[PATH_MAX];
    int n = snprintf(rel, sizeof(rel), "certificates/%s/%s/%s.crt", ca, dir, dir);
    if (n < 0 || (size_t)n >= sizeof(rel)) {
        return 0;
    }
    char *pem = NULL;
    size_t len = 0;
    int rc = acme_storage_read(st, rel, &pem, &len);
    if (rc == -ENOENT) {
        return 0;
    }
    struct acme_stored_cert *c = do_vec_push(v);
    if (c == NULL) {
        free(pem);
        return -ENOMEM;
    }
    size_t plen = strlen(st->root) + 1 + strlen(rel) + 1;
    c->ca = strdup(ca);
    c->name = do_dir_name(dir);
    c->path = malloc(plen);
    if (c->ca == NULL || c->name == NULL || c->path == NULL) {
        free(pem);
        return -ENOMEM;
    }
    n = snprintf(c->path, plen, "%s/%s", st->root, rel);
    if (rc < 0) {
        rc = do_set_error(c, "unreadable certificate file");
    } else {
        rc = do_cert_fill(st, c, ca, dir, pem, len);
    }
    free(pem);
    return n < 0 ? -EIO : rc;
}

static int do_list_ca(struct acme_storage *st, int certs_fd, const char *ca, struct cert_vec *v)
{
    char **dirs = NULL;
    size_t n = 0;
    int rc = do_subdirs(certs_fd, ca, &dirs, &n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = do_list_one(st, v, ca, dirs[i]);
    }
    do_free_strs(dirs, n);
    return rc;
}

int acme_storage_list(struct acme_storage *st, struct acme_stored_cert **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int certs_fd = openat(st->root_fd, "certificates", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (certs_fd < 0) {
        return errno == ENOENT ? 0 : do_err();
    }
    char **cas = NULL;
    size_t n_cas = 0;
    struct cert_vec v = {0};
    int rc = do_subdirs(certs_fd, ".", &cas, &n_cas);
    for (size_t i = 0; i < n_cas && rc == 0; i++) {
        rc = do_list_ca(st, certs_fd, cas[i], &v); /* sorted CAs, sorted names: sorted */
    }
    do_free_strs(cas, n_cas);
    (void)close(certs_fd); /* read-only: nothing to lose */
    if (rc < 0) {
        acme_stored_certs_free(v.items, v.n);
        return rc;
    }
    *out = v.items;
    *n = v.n;
    return 0;
}

void acme_stored_certs_free(struct acme_stored_cert *certs, size_t n)
{
    for (size_t i = 0; certs != NULL && i < n; i++) {
        struct acme_stored_cert *c = &certs[i];
        free(c->ca);
        free(c->name);
        free(c->path);
        do_free_strs(c->names, c->n_names);
        free(c->issuer);
        free(c->error);
    }
    free(certs);
}

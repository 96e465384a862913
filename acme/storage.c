/* storage.c - the directory several moat instances share for ACME accounts, certificates,
 * pending challenges and per-name issuance locks: its root, names and paths, and atomic
 * reads, writes and removals with the cleaning of left-over temp files.
 *
 * Every path is opened relative to a descriptor of the root, so it resolves the same way
 * however the root was named. A storage holds no state that calls change, so several
 * threads may use one at once; the instances that share the directory coordinate only
 * through the file system (rename, link and O_EXCL create, which NFS also makes atomic).
 * The per-name locks are in storage_lock.c, the listing of certificates in storage_list.c.
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

#include "storage_int.h"

#define STORAGE_TEMP_MAX_AGE 3600      /* seconds after which anyone's temp file is left over */
#define STORAGE_READ_MAX (32u << 20)   /* nothing we store comes near; bigger is not ours */
#define STORAGE_KEY_MAX (NAME_MAX - 5) /* room for ".json" or ".lock" after a name key */
#define STORAGE_CA_KEY_MAX 200
#define STORAGE_TEMP_BASE_MAX 64 /* how much of the target's name a temp name keeps */
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

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
int acme_storage_fsync_dir(int dirfd)
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
    return acme_storage_fsync_dir(dirfd);
}

/* Opens the directory holding rel, creating missing ones on the way when create is set.
 * Returns the descriptor (the caller closes it) or -errno; *base is rel's last component. */
int acme_storage_open_parent(const struct acme_storage *st, const char *rel, bool create,
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

int acme_storage_write_all(int fd, const uint8_t *p, size_t len)
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
        rc = acme_storage_write_all(fd, data, len);
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
int acme_storage_write_at(const struct acme_storage *st, int dirfd, const char *base,
                          const void *data, size_t len, int mode)
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
        rc = acme_storage_fsync_dir(dirfd);
    }
    return rc;
}

int acme_storage_write(struct acme_storage *st, const char *relpath, const void *data, size_t len,
                       int mode)
{
    if (!do_relpath_ok(relpath) || (data == NULL && len > 0) || (mode & ~0777) != 0) {
        return -EINVAL;
    }
    const char *base = ""; /* set when the parent opens */
    int dirfd = acme_storage_open_parent(st, relpath, true, &base);
    if (dirfd < 0) {
        return dirfd;
    }
    int rc = acme_storage_write_at(st, dirfd, base, data, len, mode);
    (void)close(dirfd); /* a directory, already synced */
    return rc;
}

/* Reads an open regular file whole, up to max bytes. */
int acme_storage_read_fd(int fd, size_t max, char **data, size_t *len)
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
    int rc = acme_storage_read_fd(fd, STORAGE_READ_MAX, data, len);
    (void)close(fd); /* read-only: nothing to lose */
    return rc;
}

/* Returns -ENOENT when there was nothing to remove. */
int acme_storage_remove(struct acme_storage *st, const char *relpath)
{
    if (!do_relpath_ok(relpath)) {
        return -EINVAL;
    }
    const char *base = ""; /* set when the parent opens */
    int dirfd = acme_storage_open_parent(st, relpath, false, &base);
    if (dirfd < 0) {
        return dirfd;
    }
    int rc = unlinkat(dirfd, base, 0) == 0 ? acme_storage_fsync_dir(dirfd) : do_err();
    (void)close(dirfd); /* a directory, already synced */
    return rc;
}

/* privs.c - giving up root after the listen sockets are bound: switch to the configured
 * user, keeping CAP_NET_BIND_SERVICE alone so a reload can still open ports below 1024. */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proxy_int.h"

static int do_lookup(const char *user, struct passwd *pw, char *buf, size_t len, char *err,
                     size_t errlen)
{
    struct passwd *found = NULL;
    char *end = NULL;
    unsigned long uid = strtoul(user, &end, 10);
    int rc = end != user && *end == '\0' ? getpwuid_r((uid_t)uid, pw, buf, len, &found)
                                         : getpwnam_r(user, pw, buf, len, &found);
    if (found == NULL) {
        snprintf(err, errlen, "user: no user \"%s\"%s%s", user, rc != 0 ? ": " : "",
                 rc != 0 ? strerror(rc) : "");
        return -1;
    }
    return 0;
}

/* Permitted and effective sets of this thread become CAP_NET_BIND_SERVICE alone; threads
 * started later inherit them. */
static int do_keep_bind_cap(void)
{
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    data[0].permitted = 1u << CAP_NET_BIND_SERVICE;
    data[0].effective = 1u << CAP_NET_BIND_SERVICE;
    return (int)syscall(SYS_capset, &head, data);
}

int px_drop_privileges(const char *user, char *err, size_t errlen)
{
    if (user == NULL) {
        return 0;
    }
    if (geteuid() != 0) {
        log_msg(CFG_LOG_WARN, "user_ignored", "not started as root: \"user\": \"%s\" has no "
                "effect (running as uid %u)", user, (unsigned)geteuid());
        return 0;
    }
    struct passwd pw;
    char buf[4096];
    if (do_lookup(user, &pw, buf, sizeof(buf), err, errlen) != 0) {
        return -1;
    }
    if (pw.pw_uid == 0) {
        return 0; /* asked to stay root */
    }
    if (prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) != 0 ||
        initgroups(pw.pw_name, pw.pw_gid) != 0 ||
        setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid) != 0 ||
        setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid) != 0) {
        snprintf(err, errlen, "user: cannot switch to \"%s\": %s", user, strerror(errno));
        return -1;
    }
    prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L);
    if (do_keep_bind_cap() != 0) {
        snprintf(err, errlen, "user: cannot keep CAP_NET_BIND_SERVICE: %s", strerror(errno));
        return -1;
    }
    if (setresuid(0, 0, 0) == 0) { /* the switch must not be reversible */
        snprintf(err, errlen, "user: still able to become root after switching");
        return -1;
    }
    struct log_line l;
    log_begin(&l, CFG_LOG_INFO, "privileges_dropped");
    log_str(&l, "user", pw.pw_name);
    log_int(&l, "uid", pw.pw_uid);
    log_int(&l, "gid", pw.pw_gid);
    log_end(&l);
    return 0;
}

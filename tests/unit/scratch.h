/* scratch.h - a test's scratch directory: the path of a file in it, and quiet shell
 * commands (openssl mostly) run inside it. The test sets scratch_dir after mkdtemp. */
#ifndef MOAT_TEST_SCRATCH_H
#define MOAT_TEST_SCRATCH_H

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *scratch_dir;

/* Returns scratch_dir/name; the text stays valid for the next three calls. */
static inline const char *at(const char *name)
{
    static char ring[4][512];
    static unsigned next;
    char *p = ring[next++ % 4];
    snprintf(p, sizeof(ring[0]), "%s/%s", scratch_dir, name);
    return p;
}

/* Runs a shell command inside scratch_dir, quietly. Returns true when it exited with 0. */
static inline bool run(const char *cmd)
{
    char line[2048];
    snprintf(line, sizeof(line), "cd '%s' && (%s) >/dev/null 2>&1", scratch_dir, cmd);
    int rc = system(line);
    if (rc != 0) {
        fprintf(stderr, "command failed (%d): %s\n", rc, line);
    }
    return rc == 0;
}

/* Removes the files in scratch_dir (it holds no subdirectories), then the directory. */
static inline void scratch_remove(void)
{
    DIR *d = opendir(scratch_dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            unlink(at(e->d_name));
        }
    }
    closedir(d);
    if (rmdir(scratch_dir) != 0) {
        perror("rmdir");
    }
}

#endif

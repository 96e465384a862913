/* log.h - structured logs for every module: one JSON object per line on stderr or in a
 * log file, safe from any thread. */
#ifndef MOAT_LOG_H
#define MOAT_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define LOG_LINE_MAX 4096

/* A line being built on the caller's stack; log_end writes it with one write(2). */
struct log_line {
    char buf[LOG_LINE_MAX];
    size_t len;
    int skip; /* below the configured level: every call is a no-op */
};

void log_set_level(enum cfg_log_level level);
int log_enabled(enum cfg_log_level level);

void log_begin(struct log_line *l, enum cfg_log_level level, const char *event);
void log_str(struct log_line *l, const char *key, const char *val);
void log_strn(struct log_line *l, const char *key, const char *val, size_t len);
void log_int(struct log_line *l, const char *key, int64_t val);
void log_end(struct log_line *l);

/* One line with a formatted "msg" field. */
void log_msg(enum cfg_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The log file. Lines go to stderr until log_open_file succeeds, then to the file. These
 * three take a lock and may block on the file system, so call them from the control
 * thread (never from a signal handler); lines may be logged from any thread meanwhile and
 * none is written to a closed descriptor: the file's descriptor number, once taken, stays
 * open for the life of the process and is only ever replaced in one step (dup3). */

/* Opens path (O_WRONLY | O_APPEND | O_CREAT, mode 0640) and sends every later line there,
 * replacing a log file opened before. Returns 0, or -1 with err naming the path and the
 * reason; lines then keep going where they went. path is copied. */
int log_open_file(const char *path, char *err, size_t errlen);

/* Opens the log file's path again and swaps it in, for logrotate after it renamed the
 * file: lines written before the swap are in the old file, after it in the new one.
 * Returns 0 (also when logging to stderr, where there is nothing to reopen) or -errno,
 * in which case lines keep going to the file open before. */
int log_reopen(void);

/* Sends lines back to stderr and closes the log file (at shutdown). Idempotent. */
void log_close_file(void);

#endif

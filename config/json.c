/* json.c - the JSON helpers the section loaders share: key paths, typed getters, and
 * error lines that say what was expected and what was found.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_int.h"

void cfg_json_key_path(char *out, size_t len, const char *parent, const char *key)
{
    /* A path cut short still names the place well enough; truncation is accepted. */
    int n = parent[0] == '\0' ? snprintf(out, len, "%s", key)
                              : snprintf(out, len, "%s.%s", parent, key);
    if (n < 0 || (size_t)n >= len) {
        out[len - 1] = '\0';
    }
}

void cfg_json_index_path(char *out, size_t len, const char *parent, size_t i)
{
    int n = snprintf(out, len, "%s[%zu]", parent, i);
    if (n < 0 || (size_t)n >= len) {
        out[len - 1] = '\0';
    }
}

/* What a JSON value is, for the "got ..." half of an error line. */
static void do_describe(const cJSON *v, char *out, size_t len)
{
    if (cJSON_IsString(v)) {
        cfg_quote(out, len, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        snprintf(out, len, "%.15g", v->valuedouble);
    } else if (cJSON_IsBool(v)) {
        snprintf(out, len, "%s", cJSON_IsTrue(v) ? "true" : "false");
    } else if (cJSON_IsNull(v)) {
        snprintf(out, len, "null");
    } else if (cJSON_IsArray(v)) {
        snprintf(out, len, "an array");
    } else {
        snprintf(out, len, "an object");
    }
}

/* "PATH: expected WHAT, got VALUE", or without the "got" part for a missing value. */
void cfg_json_expected(struct cfg_loader *ld, const char *path, const char *what, const cJSON *v)
{
    char got[CFG_QUOTE_MAX];

    if (v == NULL) {
        cfg_errs_add(ld->e, path, "%s", what);
        return;
    }
    do_describe(v, got, sizeof(got));
    cfg_errs_add(ld->e, path, "%s, got %s", what, got);
}

void cfg_json_oom(struct cfg_loader *ld, const char *path)
{
    cfg_errs_add(ld->e, path, "out of memory");
}

/* Reports keys not in the NULL-terminated list, and keys given twice (cJSON keeps both,
 * and a silently ignored second value is a trap). Keys are case-sensitive. */
void cfg_json_check_keys(struct cfg_loader *ld, const cJSON *obj, const char *path,
                         const char *const *keys)
{
    char known[256] = "";
    char sub[CFG_PATH_MAX];
    size_t used = 0;

    for (size_t k = 0; keys[k] != NULL && used < sizeof(known); k++) {
        int n = snprintf(known + used, sizeof(known) - used, "%s%s", k > 0 ? ", " : "", keys[k]);
        used += n > 0 ? (size_t)n : 0;
    }
    for (const cJSON *c = obj->child; c != NULL; c = c->next) {
        cfg_json_key_path(sub, sizeof(sub), path, c->string);
        size_t k = 0;
        while (keys[k] != NULL && strcmp(keys[k], c->string) != 0) {
            k++;
        }
        if (keys[k] == NULL) {
            cfg_errs_add(ld->e, sub, "unknown key (known keys: %s)", known);
            continue;
        }
        for (const cJSON *p = obj->child; p != c; p = p->next) {
            if (strcmp(p->string, c->string) == 0) {
                cfg_errs_add(ld->e, sub, "duplicate key");
                break;
            }
        }
    }
}

const cJSON *cfg_json_get(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* Whether v is an object; reports "expected an object" when it is not. */
bool cfg_json_object(struct cfg_loader *ld, const cJSON *v, const char *path,
                     const char *const *keys)
{
    if (!cJSON_IsObject(v)) {
        cfg_json_expected(ld, path, "expected an object", v);
        return false;
    }
    cfg_json_check_keys(ld, v, path, keys);
    return true;
}

/* The length of array v, or -1 after reporting that it is missing, not an array, or
 * empty when nonempty is set. */
int cfg_json_array(struct cfg_loader *ld, const cJSON *v, const char *path, bool nonempty)
{
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;

    if (n < 0 || (nonempty && n == 0)) {
        cfg_json_expected(ld, path, nonempty ? "expected a non-empty array" : "expected an array",
                          v);
        return -1;
    }
    return n;
}

bool cfg_json_uint(struct cfg_loader *ld, const cJSON *v, const char *path, uint64_t min,
                   uint64_t max, uint64_t *out)
{
    char what[80];
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;

    /* The range test comes first so the cast below is defined. */
    if (d >= (double)min && d <= (double)max && d == (double)(uint64_t)d) {
        *out = (uint64_t)d;
        return true;
    }
    snprintf(what, sizeof(what), "expected an integer from %llu to %llu", (unsigned long long)min,
             (unsigned long long)max);
    cfg_json_expected(ld, path, what, v);
    return false;
}

bool cfg_json_bool(struct cfg_loader *ld, const cJSON *v, const char *path, bool *out)
{
    if (!cJSON_IsBool(v)) {
        cfg_json_expected(ld, path, "expected true or false", v);
        return false;
    }
    *out = cJSON_IsTrue(v);
    return true;
}

/* A string such as "10s" or a number of seconds; more than zero unless zero_ok. */
static bool do_duration(struct cfg_loader *ld, const cJSON *v, const char *path, bool zero_ok,
                        uint64_t *out)
{
    uint64_t ms = 0;
    const char *why = NULL;

    if (cJSON_IsString(v)) {
        why = cfg_check_duration(v->valuestring, zero_ok, &ms);
    } else if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e12) {
        double d = v->valuedouble * 1000;
        ms = (uint64_t)d;
        ms += (double)ms < d ? 1 : 0;
        why = ms == 0 && !zero_ok ? "expected a duration greater than zero" : NULL;
    } else {
        why = "expected a duration such as \"10s\"";
    }
    if (why != NULL) {
        cfg_json_expected(ld, path, why, v);
        return false;
    }
    *out = ms;
    return true;
}

bool cfg_json_duration(struct cfg_loader *ld, const cJSON *v, const char *path, uint64_t *out)
{
    return do_duration(ld, v, path, false, out);
}

bool cfg_json_duration_or_zero(struct cfg_loader *ld, const cJSON *v, const char *path,
                               uint64_t *out)
{
    return do_duration(ld, v, path, true, out);
}

/* A copy of string v (non-empty), or NULL after reporting what was expected. */
char *cfg_json_string(struct cfg_loader *ld, const cJSON *v, const char *path, const char *what)
{
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
        cfg_json_expected(ld, path, what, v);
        return NULL;
    }
    char *s = cfg_strdup(v->valuestring);
    if (s == NULL) {
        cfg_json_oom(ld, path);
    }
    return s;
}

char *cfg_json_path(struct cfg_loader *ld, const cJSON *v, const char *path, const char *what)
{
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
        cfg_json_expected(ld, path, what, v);
        return NULL;
    }
    errno = 0;
    char *file = cfg_abs_path(ld->base_dir, v->valuestring);
    if (file == NULL) {
        cfg_errs_add(ld->e, path, "cannot make the path absolute: %s",
                     strerror(errno != 0 ? errno : ENOMEM));
    }
    return file;
}

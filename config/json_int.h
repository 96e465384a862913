/* json_int.h - what the JSON section loaders (config.c, acme.c, sites.c) share: the loading
 * state and helpers that read one value, each reporting its own error with the key path.
 *
 * A helper that returns bool or a pointer returns whether the value was good (or NULL
 * after reporting); nothing here stops at the first error.
 */
#ifndef MOAT_CONFIG_JSON_INT_H
#define MOAT_CONFIG_JSON_INT_H

#include <cjson/cJSON.h>

#include "config_int.h"

/* Loading state; lives on cfg_parse's stack. */
struct cfg_loader {
    struct cfg *cfg;      /* being filled; owned by cfg_parse */
    struct cfg_errs *e;   /* where errors go */
    const char *base_dir; /* for relative file paths, or NULL */
};

/* "parent.key" and "parent[i]" into out; a path cut short still names the place. */
void cfg_json_key_path(char *out, size_t len, const char *parent, const char *key);
void cfg_json_index_path(char *out, size_t len, const char *parent, size_t i);

/* "PATH: WHAT, got VALUE", or without the "got" part when v is NULL (a missing value, or
 * one that must not be echoed, such as a secret). */
void cfg_json_expected(struct cfg_loader *ld, const char *path, const char *what, const cJSON *v);
void cfg_json_oom(struct cfg_loader *ld, const char *path);

/* Reports keys of obj not in the NULL-terminated list, and keys given twice. */
void cfg_json_check_keys(struct cfg_loader *ld, const cJSON *obj, const char *path,
                         const char *const *keys);
const cJSON *cfg_json_get(const cJSON *obj, const char *key);

/* Whether v is an object (reported when not); its keys are checked against keys. */
bool cfg_json_object(struct cfg_loader *ld, const cJSON *v, const char *path,
                     const char *const *keys);
/* The length of array v, or -1 after reporting that it is missing, not an array, or
 * empty when nonempty is set. */
int cfg_json_array(struct cfg_loader *ld, const cJSON *v, const char *path, bool nonempty);

bool cfg_json_uint(struct cfg_loader *ld, const cJSON *v, const char *path, uint64_t min,
                   uint64_t max, uint64_t *out);
bool cfg_json_bool(struct cfg_loader *ld, const cJSON *v, const char *path, bool *out);
/* A string such as "10s" or a number of seconds; either way more than zero. */
bool cfg_json_duration(struct cfg_loader *ld, const cJSON *v, const char *path, uint64_t *out);
/* The same, where zero ("0s") is allowed too. */
bool cfg_json_duration_or_zero(struct cfg_loader *ld, const cJSON *v, const char *path,
                               uint64_t *out);
/* A copy of string v (non-empty), or NULL after reporting what was expected. */
char *cfg_json_string(struct cfg_loader *ld, const cJSON *v, const char *path, const char *what);
/* A file or directory path made absolute against the config's directory, or NULL after
 * reporting what was expected. Whether a file can be read is checked apart
 * (cfg_check_readable). */
char *cfg_json_path(struct cfg_loader *ld, const cJSON *v, const char *path, const char *what);

/* acme.c: the "acme" section; v is NULL when the config has none. Always leaves
 * ld->cfg->acme complete, defaults included. */
void cfg_load_acme(struct cfg_loader *ld, const cJSON *v);

/* on_demand.c: the "on_demand" section; v is NULL when the config has none, which
 * leaves it disabled. Runs before the sites, whose hosts depend on it. */
void cfg_load_on_demand(struct cfg_loader *ld, const cJSON *v);

/* sites.c: the "sites" section (required, non-empty), each site's hosts, certificate and
 * routes, checked with cfg_check_site. Runs after cfg_load_on_demand. Fills
 * ld->cfg->sites, which cfg_free releases. */
void cfg_load_sites(struct cfg_loader *ld, const cJSON *v);

#endif

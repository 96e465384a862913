/* main.c - the moat command line: run, validate, proxy, version. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"

static int do_usage(FILE *out)
{
    fprintf(out, "usage: moat run -c FILE        run with a JSON config\n"
                 "       moat validate -c FILE   check a config and list every error\n"
                 "       moat proxy --from NAME --to HOST:PORT [options]\n"
                 "       moat certs list [--storage DIR | -c FILE]\n"
                 "                               list the certificates obtained with ACME\n"
                 "       moat version\n\n%s",
            cfg_cli_usage());
    return out == stdout ? 0 : 2;
}

static struct cfg *do_load(int argc, char **argv, const char **path, char *err, size_t errlen)
{
    const char *file = NULL;
    for (int i = 2; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        } else {
            snprintf(err, errlen, "%s: unknown argument", argv[i]);
            return NULL;
        }
    }
    if (file == NULL) {
        snprintf(err, errlen, "-c FILE: required");
        return NULL;
    }
    *path = file;
    return cfg_load_file(file, err, errlen);
}

/* `moat certs list`: the storage of -c FILE, of --storage DIR, or the default one. */
static int do_certs(int argc, char **argv)
{
    static char err[16384];
    char *storage = NULL;
    struct cfg *cfg = NULL;
    if (argc < 3 || strcmp(argv[2], "list") != 0) {
        fprintf(stderr, "usage: moat certs list [--storage DIR | -c FILE]\n");
        return 2;
    }
    if (argc == 5 && strcmp(argv[3], "--storage") == 0) {
        storage = strdup(argv[4]);
    } else if (argc == 5 && (strcmp(argv[3], "-c") == 0 || strcmp(argv[3], "--config") == 0)) {
        cfg = cfg_load_file(argv[4], err, sizeof(err));
        if (cfg == NULL) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
        storage = strdup(cfg->acme.storage);
        cfg_free(cfg);
    } else if (argc == 3) {
        storage = cfg_acme_default_storage();
    } else {
        fprintf(stderr, "usage: moat certs list [--storage DIR | -c FILE]\n");
        return 2;
    }
    int rc = storage != NULL ? acme_certs_list(storage, stdout, err, sizeof(err)) : -1;
    if (rc != 0) {
        fprintf(stderr, "moat certs list: %s\n", storage != NULL ? err : "out of memory");
    }
    free(storage);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        return do_usage(stderr);
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("moat %s\n", MOAT_VERSION);
        return 0;
    }
    if (strcmp(cmd, "certs") == 0) {
        return do_certs(argc, argv);
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        return do_usage(stdout);
    }
    static char err[16384];
    struct cfg *cfg = NULL;
    const char *path = NULL; /* re-read on reload */
    if (strcmp(cmd, "run") == 0 || strcmp(cmd, "validate") == 0) {
        cfg = do_load(argc, argv, &path, err, sizeof(err));
    } else if (strcmp(cmd, "proxy") == 0) {
        if (cfg_cli_wants_help(argc - 2, argv + 2)) {
            fputs(cfg_cli_usage(), stdout);
            return 0;
        }
        cfg = cfg_from_cli(argc - 2, argv + 2, err, sizeof(err));
    } else {
        fprintf(stderr, "moat: unknown command \"%s\"\n", cmd);
        return do_usage(stderr);
    }
    if (cfg == NULL) {
        fprintf(stderr, "%s%s", err, err[0] != '\0' && err[strlen(err) - 1] != '\n' ? "\n" : "");
        return 2;
    }
    if (strcmp(cmd, "validate") == 0) {
        printf("configuration OK: %zu site(s)\n", cfg->n_sites);
        cfg_free(cfg);
        return 0;
    }
    return px_server_run(cfg, path); /* takes cfg */
}

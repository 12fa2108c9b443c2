/*
 * sliver-helper create|enter|rawsock ... (docs/helper-interface.md)
 *
 * Started by sliverd with posix_spawn; single-threaded; exits as soon as its job is done.
 * Exit status: 0 success, 1 failure (one line on stderr), 2 usage error; enter returns the command's.
 */
#include "common.h"

#include <string.h>
#include <sys/prctl.h>

char *sh_args_start;
size_t sh_args_len;

int main(int argc, char **argv)
{
    if (argc > 0) {
        sh_args_start = argv[0];
        sh_args_len = (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) - argv[0]);
    }
    /* Not dumpable from the first instruction: no process of a sliver may ptrace this host-root
     * process or open its /proc entries, even after it has joined the sliver's namespaces. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* Nothing the caller leaked (fds without CLOEXEC) may travel towards a sliver. */
    sh_close_from(3, -1, -1);
    sh_reset_signals();

    static struct sh_config cfg;
    if (argc >= 2 && strcmp(argv[1], "create") == 0) {
        sh_parse_create(&cfg, argc, argv);
        return sh_create(&cfg);
    }
    if (argc >= 2 && strcmp(argv[1], "enter") == 0) {
        sh_parse_enter(&cfg, argc, argv);
        return sh_enter(&cfg);
    }
    if (argc >= 2 && strcmp(argv[1], "rawsock") == 0) {
        sh_parse_rawsock(&cfg, argc, argv);
        return sh_rawsock(&cfg);
    }
    sh_usage("expected \"create\", \"enter\" or \"rawsock\" as the first argument");
}

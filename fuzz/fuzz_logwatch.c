/* fuzz_logwatch: inotify event buffers as the log watcher reads them
 * (lib/logwatch.c). The kernel is the only writer, but the file names in
 * them are chosen by whoever made the files, and end up in JSON. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lib/logwatch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct logwatch *w;
    struct logwatch_access a[LOGWATCH_FILES_MAX];
    char ops[200];
    if (logwatch_new_detached(1, &w))
        return 0;
    logwatch_expect(w, "current.log", LOGWATCH_OPEN | LOGWATCH_WRITE | LOGWATCH_CLOSE_WRITE);
    (void)logwatch_feed(w, data, size);
    size_t n = logwatch_take(w, a, LOGWATCH_FILES_MAX);
    for (size_t i = 0; i < n; i++) {
        /* names reach JSON unescaped: only safe characters may be left */
        for (const char *p = a[i].file; *p; p++)
            if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\\')
                __builtin_trap();
        if (!memchr(a[i].file, '\0', sizeof(a[i].file)) || !a[i].events)
            __builtin_trap();
        logwatch_ops_str(a[i].ops, ops, sizeof(ops));
    }
    logwatch_close(w);
    return 0;
}

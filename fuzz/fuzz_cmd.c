/* fuzz_cmd: signed command messages (common/cmd.c): the outer envelope and
 * the command text a device parses after the signature check. */
#include <stddef.h>
#include <stdint.h>

#include "common/cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cmd_msg m;
    struct cmd c;
    if (cmd_msg_parse(data, size, &m) == MAMORI_OK) {
        if (cmd_parse(m.text, m.text_len, &c) == MAMORI_OK)
            (void)cmd_check(&c, "MM0123456789ABCDEF", 1000);
        cmd_msg_free(&m);
    }
    if (cmd_parse((const char *)data, size, &c) == MAMORI_OK)
        (void)cmd_check(&c, "MM0123456789ABCDEF", 1000);
    return 0;
}

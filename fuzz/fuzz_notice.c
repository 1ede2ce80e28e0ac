/* fuzz_notice: the "notice" command's arguments (common/notice.h) as a
 * device parses them. Accepted documents keep every limit. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "common/notice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct notice n;
    if (notice_parse(data, size, &n) != MAMORI_OK)
        return 0;
    assert(n.n <= NOTICE_ADVISORIES && n.support_end >= 0);
    for (size_t i = 0; i < n.n; i++)
        assert(n.adv[i].id > 0 && n.adv[i].title[0] && strlen(n.adv[i].title) <= NOTICE_TITLE_MAX);
    (void)notice_worst(&n);
    return 0;
}

/* fuzz_pem: CSR and certificate parsing (factory enroll/register, CA import). */
#include <stddef.h>
#include <stdint.h>

#include "common/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    if (data[0] & 1) {
        struct crypto_csr *csr = NULL;
        if (crypto_csr_parse(p, size - 1, &csr) == MAMORI_OK)
            crypto_csr_free(csr);
    } else {
        struct crypto_cert *c = NULL;
        if (crypto_cert_parse(p, size - 1, &c) == MAMORI_OK) {
            char cn[128], fp[CRYPTO_FP_HEX_LEN], serial[64];
            (void)crypto_cert_cn(c, cn, sizeof(cn));
            crypto_cert_fingerprint(c, fp);
            (void)crypto_cert_serial_hex(c, serial, sizeof(serial));
            (void)crypto_cert_not_after(c);
            (void)crypto_cert_is_ca(c);
            crypto_cert_free(c);
        }
    }
    return 0;
}

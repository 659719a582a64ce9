/*
 * policy/pol_mask.c: column masks, applied to one value at a time as the value is served
 * (a float64's shortest text, an int64's digits, a bool's true or false, a string's
 * bytes). hash is HMAC-SHA-256 under the dataset's mask key: equal values give equal
 * pseudonyms within a dataset, different ones across datasets.
 */
#include <string.h>

#include "pol.h"

#define REDACTED "[redacted]"

/* Characters (code points) of valid UTF-8 text. */
static size_t
chars(const char *p, size_t n)
{
    size_t i, c = 0;

    for (i = 0; i < n; i++)
        c += ((unsigned char)p[i] & 0xc0) != 0x80;
    return c;
}

sl_code
pol_mask_value(pol_mask m, const cry_mac *key, const char *p, size_t n, sl_buf *out, int *is_null)
{
    unsigned char mac[CRY_HASH_BYTES];
    char hex[2 * CRY_HASH_BYTES + 1];
    size_t c, i, k;
    sl_code rc = SL_OK;

    *is_null = 0;
    switch (m) {
    case POL_MASK_NONE:
        return sl_buf_append(out, p, n);
    case POL_MASK_NULL:
        *is_null = 1;
        return SL_OK;
    case POL_MASK_REDACT:
        return sl_buf_append(out, REDACTED, sizeof REDACTED - 1);
    case POL_MASK_HASH:
        if (key == NULL)
            return SL_EINTERNAL;
        cry_mac_sha256(key, p, n, mac);
        /* a pseudonym is shown: no need for cry_hex's constant time here */
        for (i = 0; i < sizeof mac; i++) {
            hex[2 * i] = "0123456789abcdef"[mac[i] >> 4];
            hex[2 * i + 1] = "0123456789abcdef"[mac[i] & 15];
        }
        return sl_buf_append(out, hex, 2 * CRY_HASH_BYTES);
    case POL_MASK_PARTIAL:
        /* the last 4 characters kept, each other one a '*'; a value of 4 or fewer
         * characters would be shown whole, so it is all stars */
        c = chars(p, n);
        for (i = 0; i < (c > 4 ? c - 4 : c) && rc == SL_OK; i++)
            rc = sl_buf_append(out, "*", 1);
        if (c <= 4 || rc != SL_OK)
            return rc;
        /* where the last 4 characters begin: 4 lead bytes back from the end */
        for (i = n, k = 0; k < 4;)
            k += ((unsigned char)p[--i] & 0xc0) != 0x80;
        return sl_buf_append(out, p + i, n - i);
    case POL_MASK_YEAR:
        /* a date or time that begins with its year (ISO 8601): the year; else null */
        if (n >= 4 && p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
            p[2] <= '9' && p[3] >= '0' && p[3] <= '9' && (n == 4 || p[4] == '-'))
            return sl_buf_append(out, p, 4);
        *is_null = 1;
        return SL_OK;
    }
    return SL_EINTERNAL;
}

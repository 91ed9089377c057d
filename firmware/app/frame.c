#include "frame.h"

#include <string.h>

#include "hal.h"

/* CRC-32 of every nibble value (reflected polynomial 0xEDB88320): a 64-byte
 * table is plenty fast for a UART and small enough for any part. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

/* `crc` is the running (non-inverted) value; start from 0xFFFFFFFF. */
uint32_t frame_crc32_update(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *bytes = data;
    for (size_t i = 0; i < len; i++) {
        crc ^= bytes[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 0xFu];
        crc = (crc >> 4) ^ crc_nibble[crc & 0xFu];
    }
    return crc;
}

uint32_t frame_crc32(const void *data, size_t len)
{
    return ~frame_crc32_update(0xFFFFFFFFu, data, len);
}

static const char hex_digits[] = "0123456789abcdef";

static void put(frame_writer_t *w, const char *text, size_t len)
{
    w->crc = frame_crc32_update(w->crc, text, len);
    w->length += (uint32_t)len;
    hal_send(text, len);
}

static size_t format_u64(char *out, uint64_t value)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static void put_key(frame_writer_t *w, const char *key)
{
    put(w, " ", 1);
    put(w, key, strlen(key));
    put(w, "=", 1);
}

void frame_begin(frame_writer_t *w, const char *kind)
{
    w->crc = 0xFFFFFFFFu;
    w->length = 0;
    hal_send("@", 1);
    put(w, kind, strlen(kind));
}

void frame_text(frame_writer_t *w, const char *text)
{
    put(w, text, strlen(text));
}

void frame_field_u64(frame_writer_t *w, const char *key, uint64_t value)
{
    char digits[20];
    put_key(w, key);
    put(w, digits, format_u64(digits, value));
}

void frame_field_i32(frame_writer_t *w, const char *key, int32_t value)
{
    char digits[21];
    size_t n = 0;
    uint32_t magnitude = (uint32_t)value;
    if (value < 0) {
        digits[n++] = '-';
        magnitude = 0u - magnitude;
    }
    n += format_u64(digits + n, magnitude);
    put_key(w, key);
    put(w, digits, n);
}

void frame_field_hex32(frame_writer_t *w, const char *key, uint32_t value)
{
    char text[10] = {'0', 'x'};
    for (int i = 0; i < 8; i++)
        text[2 + i] = hex_digits[(value >> (28 - 4 * i)) & 0xFu];
    put_key(w, key);
    put(w, text, sizeof text);
}

/* Values are single tokens: anything that could break the framing or the
 * field split becomes '_'. */
void frame_field_str(frame_writer_t *w, const char *key, const char *value)
{
    put_key(w, key);
    for (; *value; value++) {
        char c = *value;
        if (c <= ' ' || c > '~' || c == '@' || c == '#' || c == '=')
            c = '_';
        put(w, &c, 1);
    }
}

void frame_field_bytes(frame_writer_t *w, const char *key, const void *data, size_t len)
{
    put_key(w, key);
    frame_field_bytes_more(w, data, len);
}

void frame_field_bytes_more(frame_writer_t *w, const void *data, size_t len)
{
    const uint8_t *bytes = data;
    for (size_t i = 0; i < len; i++) {
        char pair[2] = {hex_digits[bytes[i] >> 4], hex_digits[bytes[i] & 0xFu]};
        put(w, pair, 2);
    }
}

/* " key=1,2,3" (" key=" for an empty list) */
void frame_field_u32_list(frame_writer_t *w, const char *key, const uint32_t *values, size_t count)
{
    char digits[20];
    put_key(w, key);
    for (size_t i = 0; i < count; i++) {
        if (i)
            put(w, ",", 1);
        put(w, digits, format_u64(digits, values[i]));
    }
}

void frame_end(frame_writer_t *w)
{
    char tail[32];
    size_t n = 0;
    uint32_t crc = ~w->crc;
    tail[n++] = '#';
    n += format_u64(tail + n, w->length);
    tail[n++] = '#';
    for (int i = 0; i < 8; i++)
        tail[n++] = hex_digits[(crc >> (28 - 4 * i)) & 0xFu];
    tail[n++] = '\n';
    hal_send(tail, n);
}

static int parse_decimal(const char *s, const char *end, uint32_t *value)
{
    uint32_t v = 0;
    if (s == end || end - s > 9)
        return 0;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        v = v * 10u + (uint32_t)(*s - '0');
    }
    *value = v;
    return 1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int parse_hex(const char *s, const char *end, uint32_t *value)
{
    uint32_t v = 0;
    if (end - s > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        s += 2;
    if (s == end || end - s > 8)
        return 0;
    for (; s < end; s++) {
        int d = hex_value(*s);
        if (d < 0)
            return 0;
        v = (v << 4) | (uint32_t)d;
    }
    *value = v;
    return 1;
}

int frame_receive(char *body, size_t capacity)
{
    size_t n = 0;
    int too_long = 0;
    uint8_t c;

    do {
        c = hal_recv();
    } while (c != '@');
    for (;;) {
        c = hal_recv();
        if (c == '@') { /* the previous line was cut short: start over */
            n = 0;
            too_long = 0;
            continue;
        }
        if (c == '\n')
            break;
        if (c == '\r')
            continue;
        if (n + 1 < capacity)
            body[n++] = (char)c;
        else
            too_long = 1;
    }
    body[n] = '\0';
    if (too_long)
        return FRAME_ERR_TOO_LONG;

    /* body#length#crc: split at the last two '#'. */
    char *crc_sep = strrchr(body, '#');
    if (!crc_sep)
        return FRAME_ERR_FORMAT;
    *crc_sep = '\0';
    char *len_sep = strrchr(body, '#');
    if (!len_sep)
        return FRAME_ERR_FORMAT;
    uint32_t length, crc;
    if (crc_sep + 1 + 8 != body + n)
        return FRAME_ERR_FORMAT;
    for (const char *p = crc_sep + 1; p < body + n; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return FRAME_ERR_FORMAT; /* exactly 8 lowercase hex digits */
    }
    if (!parse_hex(crc_sep + 1, body + n, &crc))
        return FRAME_ERR_FORMAT;
    if (!parse_decimal(len_sep + 1, crc_sep, &length))
        return FRAME_ERR_FORMAT;
    *len_sep = '\0';
    size_t body_len = (size_t)(len_sep - body);
    if (length != body_len)
        return FRAME_ERR_LENGTH;
    if (frame_crc32(body, body_len) != crc)
        return FRAME_ERR_CRC;
    return (int)body_len;
}

int frame_kind_is(const char *body, const char *kind)
{
    size_t n = strlen(kind);
    return strncmp(body, kind, n) == 0 && (body[n] == ' ' || body[n] == '\0');
}

const char *frame_find(const char *body, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = strchr(body, ' '); p; p = strchr(p + 1, ' ')) {
        if (strncmp(p + 1, key, n) == 0 && p[1 + n] == '=')
            return p + 2 + n;
    }
    return NULL;
}

static const char *value_end(const char *value)
{
    const char *end = strchr(value, ' ');
    return end ? end : value + strlen(value);
}

int frame_get_u32(const char *body, const char *key, uint32_t *value)
{
    const char *v = frame_find(body, key);
    return v && parse_decimal(v, value_end(v), value);
}

int frame_get_hex32(const char *body, const char *key, uint32_t *value)
{
    const char *v = frame_find(body, key);
    return v && parse_hex(v, value_end(v), value);
}

int frame_hex_decode(const char *hex, uint8_t *out, size_t max_bytes, size_t *decoded)
{
    const char *end = value_end(hex);
    size_t digits = (size_t)(end - hex);
    if (digits % 2u || digits / 2u > max_bytes)
        return 0;
    for (size_t i = 0; i < digits / 2u; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *decoded = digits / 2u;
    return 1;
}

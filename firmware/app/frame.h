/*
 * Framed lines over the console UART (the host side is
 * harness/targets/protocol.py).
 *
 *     @<body>#<length>#<crc32>\n
 *
 * <body> is printable ASCII without '@', '#' or newlines: a kind ("RESULT")
 * followed by " key=value" fields. <length> is the body's length in decimal
 * and <crc32> its CRC-32 (IEEE 802.3, as zlib.crc32) in 8 lowercase hex
 * digits, so a line with a flipped, dropped or truncated byte is rejected
 * instead of parsed. Writing streams the body (length and CRC come last), so
 * no buffer of the whole line is needed.
 */
#ifndef FB_FRAME_H
#define FB_FRAME_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t crc; /* running, not yet inverted */
    uint32_t length;
} frame_writer_t;

uint32_t frame_crc32_update(uint32_t crc, const void *data, size_t len);
uint32_t frame_crc32(const void *data, size_t len);

void frame_begin(frame_writer_t *w, const char *kind);
void frame_text(frame_writer_t *w, const char *text);
void frame_field_u64(frame_writer_t *w, const char *key, uint64_t value);
void frame_field_i32(frame_writer_t *w, const char *key, int32_t value);
void frame_field_hex32(frame_writer_t *w, const char *key, uint32_t value);
void frame_field_str(frame_writer_t *w, const char *key, const char *value);
void frame_field_bytes(frame_writer_t *w, const char *key, const void *data, size_t len);
/* More bytes of the field just begun (a value sent in parts, e.g. several outputs) */
void frame_field_bytes_more(frame_writer_t *w, const void *data, size_t len);
void frame_field_u32_list(frame_writer_t *w, const char *key, const uint32_t *values, size_t count);
void frame_end(frame_writer_t *w);

/* Reads one frame into body (NUL-terminated). Returns the body length, or a
 * negative FRAME_ERR_* when the line was too long or failed its checks. Bytes
 * before '@' are skipped; a new '@' restarts the line. */
#define FRAME_ERR_TOO_LONG (-1)
#define FRAME_ERR_FORMAT (-2)
#define FRAME_ERR_LENGTH (-3)
#define FRAME_ERR_CRC (-4)
int frame_receive(char *body, size_t capacity);

/* Field access in a received body: " key=value" (value up to the next space). */
const char *frame_find(const char *body, const char *key);
int frame_get_u32(const char *body, const char *key, uint32_t *value);
int frame_get_hex32(const char *body, const char *key, uint32_t *value);
int frame_kind_is(const char *body, const char *kind);
int frame_hex_decode(const char *hex, uint8_t *out, size_t max_bytes, size_t *decoded);

#endif

/*
 * The measurement loop: announce the model, then for every input the host
 * sends, paint the arena and the stack, run the model once between two reads
 * of the time counter and report status, time, arena and stack high-water
 * marks, per-layer times and the output.
 *
 * Conversation (one framed line each way at a time; see frame.h and
 * harness/protocol.py):
 *   device: READY proto=1 board= model= arena= in= out= layers= timer= stack= chunk=
 *   host:   RUN bytes=<n> crc=<crc32 of the input> paint=<hex byte> [file=<path>]
 *   device: ACK got=0                  (arena painted, ready for data)
 *           with file=: the input is read from that host file through the
 *           HAL (semihosting on emulators), ACK got=<n> | NAK why=file
 *   host:   DATA off=<offset> hex=<bytes>   (stop-and-wait, <= 256 bytes)
 *   device: ACK got=<bytes received>  |  NAK why=<reason> want=<offset>
 *   ...     after the last chunk the device checks the CRC and runs
 *   device: RESULT status= ticks= arena= stack= stack_model= overflow= calls= layers= out=
 *   host:   EXIT   -> device: BYE, then hal_exit(0)
 *   host:   PING   -> device: PONG (link check)
 *   host:   HELLO  -> device: READY again
 * Every host command carries seq=<n> and every answer echoes it (seq=0 for
 * NAK why=frame: the damaged command's seq is unknown), so the host can skip
 * a late answer to a command it already gave up on.
 * A fault at any time produces a FAULT frame and ends the run.
 *
 * The paint byte is chosen by the host: it runs every input twice with two
 * different bytes and keeps the larger watermark, so a byte the model wrote
 * with the paint's value cannot hide. The input arrives after the arena was
 * painted, straight into fb_model_input(): no second input buffer in RAM.
 */
#include <stdint.h>
#include <string.h>

#include "fb_model.h"
#include "frame.h"
#include "hal.h"

#ifndef FB_BOARD_NAME
#define FB_BOARD_NAME "unknown"
#endif

#define PROTOCOL_VERSION 1u
#define MAX_CHUNK_BYTES 256u
/* "DATA off=<7 digits> hex=<512>" + "#<len>#<crc>" with room to spare */
#define LINE_CAPACITY 640u

#define LAYER_SLOTS (FB_NUM_LAYERS > 0 ? FB_NUM_LAYERS : 1)

static char line[LINE_CAPACITY];
static uint32_t command_seq; /* echoed in every answer: stale answers are recognisable */
static uint32_t layer_ticks[LAYER_SLOTS];
static uint32_t layer_calls;
static uint64_t layer_last;

/* Overrides the generated code's weak no-op: called after every layer. */
void fb_layer_done(int layer_index)
{
    uint64_t now = hal_time();
    if (layer_index >= 0 && layer_index < FB_NUM_LAYERS)
        layer_ticks[layer_index] = (uint32_t)(now - layer_last);
    layer_calls++;
    layer_last = now;
}

/* Reads the next command into `line`; 0 when it arrived damaged. */
static int receive_command(void)
{
    if (frame_receive(line, sizeof line) < 0) {
        line[0] = '\0';
        command_seq = 0;
        return 0;
    }
    if (!frame_get_u32(line, "seq", &command_seq))
        command_seq = 0;
    return 1;
}

static void begin_answer(frame_writer_t *w, const char *kind)
{
    frame_begin(w, kind);
    frame_field_u64(w, "seq", command_seq);
}

static void send_simple(const char *kind)
{
    frame_writer_t w;
    begin_answer(&w, kind);
    frame_end(&w);
}

static void send_ack(uint32_t got)
{
    frame_writer_t w;
    begin_answer(&w, "ACK");
    frame_field_u64(&w, "got", got);
    frame_end(&w);
}

static void send_nak(const char *why, uint32_t want)
{
    frame_writer_t w;
    begin_answer(&w, "NAK");
    frame_field_str(&w, "why", why);
    frame_field_u64(&w, "want", want);
    frame_end(&w);
}

static void send_ready(void)
{
    frame_writer_t w;
    begin_answer(&w, "READY");
    frame_field_u64(&w, "proto", PROTOCOL_VERSION);
    frame_field_str(&w, "board", FB_BOARD_NAME);
    frame_field_str(&w, "model", fb_model_name);
    frame_field_u64(&w, "arena", FB_ARENA_BYTES);
    frame_field_u64(&w, "in", FB_INPUT_BYTES);
    frame_field_u64(&w, "out", FB_OUTPUT_BYTES);
    frame_field_u64(&w, "layers", FB_NUM_LAYERS);
    frame_field_str(&w, "timer", hal_time_source());
    frame_field_u64(&w, "stack", hal_stack_size());
    frame_field_u64(&w, "chunk", MAX_CHUNK_BYTES);
    frame_end(&w);
}

void hal_fault_report(const hal_fault_t *f)
{
    frame_writer_t w;
    frame_begin(&w, "FAULT");
    frame_field_u64(&w, "exc", f->exception);
    frame_field_hex32(&w, "pc", f->pc);
    frame_field_hex32(&w, "lr", f->lr);
    frame_field_hex32(&w, "xpsr", f->xpsr);
    frame_field_hex32(&w, "cfsr", f->cfsr);
    frame_field_hex32(&w, "hfsr", f->hfsr);
    frame_field_hex32(&w, "mmfar", f->mmfar);
    frame_field_hex32(&w, "bfar", f->bfar);
    frame_field_hex32(&w, "sp", f->sp);
    frame_end(&w);
}

/* Highest arena byte that no longer holds the paint, plus one. */
static uint32_t arena_peak(uint8_t paint)
{
    const volatile uint8_t *arena = (const volatile uint8_t *)fb_arena;
    uint32_t n = FB_ARENA_BYTES;
    while (n > 0 && arena[n - 1] == paint)
        n--;
    return n;
}

static void measure_and_report(uint8_t paint)
{
    memset(layer_ticks, 0, sizeof layer_ticks);
    layer_calls = 0;

    hal_stack_paint(paint);
    size_t depth_at_call = hal_stack_depth();
    uint64_t start = hal_time();
    layer_last = start;
    int status = fb_model_run();
    uint64_t stop = hal_time();

    size_t stack_used = hal_stack_used(paint);
    frame_writer_t w;
    begin_answer(&w, "RESULT");
    frame_field_i32(&w, "status", status);
    frame_field_u64(&w, "ticks", stop - start);
    frame_field_u64(&w, "arena", arena_peak(paint));
    frame_field_u64(&w, "stack", stack_used);
    frame_field_u64(&w, "stack_model", stack_used > depth_at_call ? stack_used - depth_at_call : 0);
    /* The paint reached the bottom of the stack: it overflowed (or came close). */
    frame_field_u64(&w, "overflow", stack_used >= hal_stack_size());
    frame_field_u64(&w, "calls", layer_calls);
    frame_field_u32_list(&w, "layers", layer_ticks, FB_NUM_LAYERS);
    frame_field_bytes(&w, "out", fb_model_output(), FB_OUTPUT_BYTES);
    frame_end(&w);
}

/* One RUN: receive the input into the painted arena, check it, measure.
 * Returns with `line` holding an unhandled command (a new RUN, EXIT, ...) when
 * the host abandons the transfer, else with line[0] == 0. */
static void handle_run(void)
{
    for (;;) {
        uint32_t bytes, crc, paint;
        if (!frame_get_u32(line, "bytes", &bytes) || !frame_get_hex32(line, "crc", &crc) ||
            !frame_get_hex32(line, "paint", &paint) || paint > 0xFFu) {
            send_nak("args", 0);
            line[0] = '\0';
            return;
        }
        if (bytes != FB_INPUT_BYTES) {
            send_nak("size", FB_INPUT_BYTES);
            line[0] = '\0';
            return;
        }

        memset(fb_arena, (int)paint, FB_ARENA_BYTES);
        uint8_t *input = (uint8_t *)fb_model_input();
        uint32_t got = 0;

        char *file = (char *)frame_find(line, "file");
        if (file) {
            /* Emulator fast path: the input waits in a host file. The path is
             * cut out of `line` in place (no other field is read after it). */
            char *end = strchr(file, ' ');
            if (end)
                *end = '\0';
            if (hal_host_read(file, input, bytes) != 0) {
                send_nak("file", 0);
                line[0] = '\0';
                return;
            }
            got = bytes;
        }
        send_ack(got);

        while (got < bytes) {
            if (!receive_command()) {
                send_nak("frame", got);
                continue;
            }
            if (!frame_kind_is(line, "DATA"))
                goto new_command; /* host gave up on this transfer */
            uint32_t off;
            const char *hex = frame_find(line, "hex");
            size_t decoded;
            /* A resent chunk (off < got: our ACK was lost) is accepted again. */
            if (!frame_get_u32(line, "off", &off) || off > got || !hex ||
                !frame_hex_decode(hex, input + off, bytes - off, &decoded)) {
                send_nak("data", got);
                continue;
            }
            if (off + decoded > got)
                got = off + (uint32_t)decoded;
            send_ack(got);
        }

        if (frame_crc32(input, bytes) != crc) {
            send_nak("crc", 0);
            line[0] = '\0';
            return;
        }
        measure_and_report((uint8_t)paint);
        line[0] = '\0';
        return;

    new_command:
        if (!frame_kind_is(line, "RUN"))
            return;
        /* A fresh RUN: start over with its arguments. */
    }
}

int main(void)
{
    hal_setup();
    send_ready();

    line[0] = '\0';
    for (;;) {
        if (line[0] == '\0' && !receive_command()) {
            send_nak("frame", 0);
            continue;
        }
        if (frame_kind_is(line, "RUN")) {
            handle_run();
        } else if (frame_kind_is(line, "EXIT")) {
            send_simple("BYE");
            hal_exit(HAL_EXIT_OK);
        } else if (frame_kind_is(line, "PING")) {
            send_simple("PONG");
            line[0] = '\0';
        } else if (frame_kind_is(line, "HELLO")) {
            send_ready(); /* the host missed or could not read the first one */
            line[0] = '\0';
        } else {
            send_nak("command", 0);
            line[0] = '\0';
        }
    }
}

/*
 * The measurement loop: announce the model, then for every input the host
 * sends, paint the arena and the stack, run the model once between two reads
 * of the time counter and report status, time, arena and stack high-water
 * marks, per-layer times and the output.
 *
 * Conversation (one framed line each way at a time; see frame.h and
 * harness/protocol.py):
 *   device: READY proto=1 board= model= arena= in= out= layers= timer= stack= chunk= stream=
 *   host:   RUN bytes=<n> crc=<crc32 of the input> paint=<hex byte> [file=<path>]
 *   device: ACK got=0                  (arena painted, ready for data)
 *           with file=: the input is read from that host file through the
 *           HAL (semihosting on emulators), ACK got=<n> | NAK why=file
 *   host:   DATA off=<offset> hex=<bytes>   (stop-and-wait, <= 256 bytes)
 *   device: ACK got=<bytes received>  |  NAK why=<reason> want=<offset>
 *   ...     after the last chunk the device checks the CRC and runs
 *   device: RESULT status= ticks= io= arena= stack= stack_model= overflow= calls= layers= out=
 *   host:   EXIT   -> device: BYE, then hal_exit(0)
 *   host:   PING   -> device: PONG (link check)
 *   host:   HELLO  -> device: READY again
 * Every host command carries seq=<n> and every answer echoes it (seq=0 for
 * NAK why=frame: the damaged command's seq is unknown), so the host can skip
 * a late answer to a command it already gave up on.
 * A fault at any time produces a FAULT frame and ends the run.
 *
 * Streamed input (READY stream=1; stream=0 for every other model): the model
 * never holds its whole input. It asks for pieces while it runs, through
 * fb_model_read_input(), any number of times and in any order, and there is
 * no DATA phase before the run:
 *   host:   RUN bytes= crc= paint= [file=<path>]
 *           with file=: the file stays open for the run, pieces are read from
 *           it (hal_host_read_at): ACK got=<n> | NAK why=file, the file's CRC
 *           is checked (NAK why=crc), the model runs, RESULT.
 *   device: ACK got=0, and the model runs at once; each piece it reads is
 *   device: NEED req=<r> off=<offset> len=<n>     (n <= chunk: longer reads are split)
 *   host:   DATA seq=<the RUN's seq> req=<r> off=<offset> hex=<n bytes>
 *   ...
 *   device: RESULT ...
 *   ACK, NEED and RESULT all echo the RUN's seq, and the host's DATA carries
 *   it too: the whole run is the answer to one command. req counts NEEDs and
 *   is never reset, so a late DATA (an answer to an earlier NEED, also of an
 *   earlier run) is recognised and dropped without a word. A damaged DATA,
 *   or one whose off or length is not what was asked for, makes the device
 *   send the same NEED again (NEED_RETRIES times, then the read fails and the
 *   model returns a non-zero status). The RUN again with the run's own seq
 *   means the host lost the ACK: the device says ACK got=0 and the NEED
 *   again; PING with the run's seq means the host heard nothing whole for a
 *   while: the NEED again (outside a run PING is answered PONG, which tells
 *   the host that the run is over and its RESULT was lost). Any other
 *   command means the host gave up on the run: it ends without a RESULT and
 *   the command is handled.
 *   The RUN's crc cannot be checked before the run (the bytes arrive while it
 *   runs, in pieces, some twice, some never): each DATA frame's own CRC
 *   protects its bytes. A host file is checked against it before the run.
 *   The time spent in fb_model_read_input is input I/O, not inference: it is
 *   left out of ticks= and of the per-layer times and reported as io=<ticks>
 *   (0 for other models). The stack watermark does include the reads' own
 *   frames, as a real input driver's would.
 *
 * The paint byte is chosen by the host: it runs every input twice with two
 * different bytes and keeps the larger watermark, so a byte the model wrote
 * with the paint's value cannot hide. An ordinary model's input arrives after
 * the arena was painted, straight into fb_model_input(): no second input
 * buffer in RAM.
 */
#include <stdint.h>
#include <string.h>

#include "fb_model.h"
#include "frame.h"
#include "hal.h"

#ifndef FB_BOARD_NAME
#define FB_BOARD_NAME "unknown"
#endif

#ifndef FB_INPUT_STREAMED
#define FB_INPUT_STREAMED 0 /* headers from before streamed input */
#endif

/* Generated code of a streamed model calls this (fb_model.h declares it);
 * defined for every model so that every model links. */
int fb_model_read_input(uint32_t offset, int8_t *dst, uint32_t len);

#define PROTOCOL_VERSION 1u
#define MAX_CHUNK_BYTES 256u
/* "DATA seq=<9 digits> req=<9> off=<9> hex=<512>" + "#<len>#<crc>" with room to spare */
#define LINE_CAPACITY 640u
/* How often one NEED is repeated after damaged or wrong answers. */
#define NEED_RETRIES 8
/* req= stays within what frame_get_u32 parses (9 digits). */
#define MAX_REQ 999999999u

#define LAYER_SLOTS (FB_NUM_LAYERS > 0 ? FB_NUM_LAYERS : 1)

static char line[LINE_CAPACITY];
static uint32_t command_seq; /* echoed in every answer: stale answers are recognisable */
static uint32_t layer_ticks[LAYER_SLOTS];
static uint32_t layer_calls;
static uint64_t layer_last;

/* Where a streamed model's input comes from during a run. */
static struct {
    int active;        /* a run is on: fb_model_read_input may read */
    int handle;        /* hal_host_open's handle, or -1: ask the host with NEED */
    int abandoned;     /* the host sent another command mid-run: `line` holds it */
    uint32_t seq;      /* the RUN's seq: NEED and RESULT echo it */
    uint32_t req;      /* NEED counter, never reset: a late DATA never matches */
    uint64_t io_ticks; /* time spent in fb_model_read_input this run */
} stream = {0, -1, 0, 0, 0, 0};

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
    frame_field_u64(&w, "stream", FB_INPUT_STREAMED ? 1u : 0u);
    frame_end(&w);
}

static void send_need(uint32_t req, uint32_t offset, uint32_t len)
{
    frame_writer_t w;
    begin_answer(&w, "NEED");
    frame_field_u64(&w, "req", req);
    frame_field_u64(&w, "off", offset);
    frame_field_u64(&w, "len", len);
    frame_end(&w);
}

/* One NEED/DATA exchange over the UART: `len` (<= MAX_CHUNK_BYTES) input
 * bytes from `offset` into `dst`. 0 on success, -1 when the answers stayed
 * damaged or wrong, or the host abandoned the run (stream.abandoned). */
static int need_piece(uint32_t offset, int8_t *dst, uint32_t len)
{
    stream.req = stream.req >= MAX_REQ ? 1u : stream.req + 1u;
    for (int attempt = 0; attempt <= NEED_RETRIES; attempt++) {
        command_seq = stream.seq;
        send_need(stream.req, offset, len);
        for (;;) {
            if (!receive_command())
                break; /* damaged: ask again */
            if (frame_kind_is(line, "DATA")) {
                uint32_t req, off;
                const char *hex = frame_find(line, "hex");
                size_t decoded;
                if (!frame_get_u32(line, "req", &req))
                    break;
                if (req != stream.req || command_seq != stream.seq)
                    continue; /* late: an answer to an earlier NEED */
                if (!frame_get_u32(line, "off", &off) || off != offset || !hex ||
                    !frame_hex_decode(hex, (uint8_t *)dst, len, &decoded) || decoded != len)
                    break; /* not what was asked for: ask again */
                command_seq = stream.seq;
                line[0] = '\0';
                return 0;
            }
            if (command_seq == stream.seq && frame_kind_is(line, "RUN")) {
                /* The host lost our ACK (or this NEED): say both again. */
                send_ack(0);
                break;
            }
            if (command_seq == stream.seq && frame_kind_is(line, "PING"))
                break; /* the host heard nothing (whole) for a while: say it again */
            /* Any other command: the host gave up on this run. It stays in
             * `line` (with its seq) for the main loop. */
            stream.abandoned = 1;
            return -1;
        }
    }
    command_seq = stream.seq;
    line[0] = '\0';
    return -1;
}

int fb_model_read_input(uint32_t offset, int8_t *dst, uint32_t len)
{
    if (!stream.active || stream.abandoned || offset > (uint32_t)FB_INPUT_BYTES ||
        len > (uint32_t)FB_INPUT_BYTES - offset)
        return -1;
    uint64_t start = hal_time();
    int status = 0;
    if (stream.handle >= 0) {
        status = hal_host_read_at(stream.handle, offset, dst, len);
    } else {
        while (status == 0 && len > 0) {
            uint32_t n = len < MAX_CHUNK_BYTES ? len : MAX_CHUNK_BYTES;
            status = need_piece(offset, dst, n);
            offset += n;
            dst += n;
            len -= n;
        }
    }
    /* Input I/O is not inference: keep it out of the run's and the layer's time. */
    uint64_t spent = hal_time() - start;
    stream.io_ticks += spent;
    layer_last += spent;
    return status == 0 ? 0 : -1;
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

/* Runs the model once and sends RESULT; nothing when the host abandoned a
 * streamed run (`line` then holds its new command). */
static void measure_and_report(uint8_t paint)
{
    memset(layer_ticks, 0, sizeof layer_ticks);
    layer_calls = 0;
    stream.io_ticks = 0;

    hal_stack_paint(paint);
    size_t depth_at_call = hal_stack_depth();
    uint64_t start = hal_time();
    layer_last = start;
    int status = fb_model_run();
    uint64_t stop = hal_time();

    size_t stack_used = hal_stack_used(paint);
    if (stream.abandoned)
        return;
    frame_writer_t w;
    begin_answer(&w, "RESULT");
    frame_field_i32(&w, "status", status);
    frame_field_u64(&w, "ticks", stop - start - stream.io_ticks);
    frame_field_u64(&w, "io", stream.io_ticks);
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

/* CRC-32 of a host file, read in pieces (a streamed model has no input buffer). */
static int host_file_crc(int handle, uint32_t *crc)
{
    uint8_t piece[256];
    uint32_t running = 0xFFFFFFFFu;
    for (uint32_t off = 0; off < (uint32_t)FB_INPUT_BYTES;) {
        uint32_t n = (uint32_t)FB_INPUT_BYTES - off;
        if (n > sizeof piece)
            n = sizeof piece;
        if (hal_host_read_at(handle, off, piece, n) != 0)
            return -1;
        running = frame_crc32_update(running, piece, n);
        off += n;
    }
    *crc = ~running;
    return 0;
}

/* A RUN of a streamed model: no input transfer, the model reads as it runs,
 * from the open host file `file` or (NULL) from the host over the UART.
 * Returns with `line` holding the host's next command when it abandoned the
 * run, else with line[0] == 0. */
static void run_streamed(const char *file, uint32_t crc, uint8_t paint)
{
    stream.handle = -1;
    stream.abandoned = 0;
    stream.seq = command_seq;
    if (file) {
        stream.handle = hal_host_open(file, FB_INPUT_BYTES);
        if (stream.handle < 0) {
            send_nak("file", 0);
            line[0] = '\0';
            return;
        }
        send_ack(FB_INPUT_BYTES);
        uint32_t file_crc;
        if (host_file_crc(stream.handle, &file_crc) != 0 || file_crc != crc) {
            hal_host_close(stream.handle);
            stream.handle = -1;
            send_nak("crc", 0);
            line[0] = '\0';
            return;
        }
    } else {
        send_ack(0); /* no DATA phase: the model asks for its input (NEED) */
    }
    line[0] = '\0';
    stream.active = 1;
    measure_and_report(paint);
    stream.active = 0;
    hal_host_close(stream.handle);
    stream.handle = -1;
    if (!stream.abandoned)
        line[0] = '\0';
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
        }
        if (FB_INPUT_STREAMED) {
            run_streamed(file, crc, (uint8_t)paint);
            return;
        }
        if (file) {
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

/*
 * The measurement loop: announce the model, then for every input the host
 * sends, paint the arena, receive the input, measure one run of the model
 * (measure.c) and report it.
 *
 * Conversation (one framed line each way at a time; see frame.h and
 * harness/targets/protocol.py):
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
 * A fault at any time produces a FAULT frame and ends the run (fault_report.c).
 * A model with streamed input has no DATA phase: it asks for its input while
 * it runs (NEED), see stream.c.
 *
 * A command that arrives while another one is being handled (the host gave
 * up on a transfer or a streamed run) is handed back as COMMAND_SUPERSEDED,
 * in the same fb_command_t, and handled next.
 */
#include "session.h"

#include <string.h>

#include "command.h"
#include "fb_model.h"
#include "fb_protocol.h"
#include "hal.h"
#include "measure.h"
#include "stream.h"

#ifndef FB_BOARD_NAME
#define FB_BOARD_NAME "unknown"
#endif

/* The longest lines the host sends fit in a command (seq=, req= and off= have
 * at most the 9 digits frame_get_u32 parses). */
_Static_assert(sizeof "RUN seq=999999999 bytes=999999999 crc=ffffffff paint=ff file=" - 1u + FB_MAX_PATH_BYTES <
                   FB_LINE_CAPACITY,
               "a RUN with the longest file= path does not fit FB_LINE_CAPACITY");
_Static_assert(sizeof "DATA seq=999999999 req=999999999 off=999999999 hex=" - 1u + 2u * FB_MAX_CHUNK_BYTES <
                   FB_LINE_CAPACITY,
               "a DATA frame of FB_MAX_CHUNK_BYTES does not fit FB_LINE_CAPACITY");

static void answer_ready(uint32_t seq)
{
    frame_writer_t w;
    answer_begin(&w, "READY", seq);
    frame_field_u64(&w, "proto", FB_PROTOCOL_VERSION);
    frame_field_str(&w, "board", FB_BOARD_NAME);
    frame_field_str(&w, "model", fb_model_name);
    frame_field_u64(&w, "arena", FB_ARENA_BYTES);
    frame_field_u64(&w, "in", FB_INPUT_BYTES);
    frame_field_u64(&w, "out", FB_OUTPUT_BYTES);
    frame_field_u64(&w, "layers", FB_NUM_LAYERS);
    frame_field_str(&w, "timer", hal_time_source());
    frame_field_u64(&w, "stack", hal_stack_size());
    frame_field_u64(&w, "chunk", FB_MAX_CHUNK_BYTES);
    frame_field_u64(&w, "stream", FB_INPUT_STREAMED ? 1u : 0u);
    frame_end(&w);
}

/* Reads a whole host file of exactly `len` bytes into `dst`; 0 on success. */
static int read_host_file(const char *path, void *dst, uint32_t len)
{
    int file = hal_host_open(path, len);
    if (file < 0)
        return -1;
    int status = hal_host_read_at(file, 0, dst, len);
    hal_host_close(file);
    return status;
}

/* The DATA phase: DATA chunks into `input` until all `bytes` are there.
 * COMMAND_DONE when they are (`command` then holds the last DATA, whose seq
 * the RESULT echoes), COMMAND_SUPERSEDED when the host sent another command. */
static command_outcome_t receive_input(fb_command_t *command, uint8_t *input, uint32_t got, uint32_t bytes)
{
    while (got < bytes) {
        if (!command_receive(command)) {
            answer_nak(command->seq, "frame", got);
            continue;
        }
        if (!command_is(command, "DATA"))
            return COMMAND_SUPERSEDED; /* the host gave up on this transfer */
        uint32_t off;
        const char *hex = frame_find(command->text, "hex");
        size_t decoded;
        /* A resent chunk (off < got: our ACK was lost) is accepted again. */
        if (!frame_get_u32(command->text, "off", &off) || off > got || !hex ||
            !frame_hex_decode(hex, input + off, bytes - off, &decoded)) {
            answer_nak(command->seq, "data", got);
            continue;
        }
        if (off + decoded > got)
            got = off + (uint32_t)decoded;
        answer_ack(command->seq, got);
    }
    return COMMAND_DONE;
}

/* One RUN: paint the arena, receive the input into it, check it, measure. */
static command_outcome_t handle_run(fb_command_t *command)
{
    for (;;) {
        uint32_t bytes, crc, paint;
        if (!frame_get_u32(command->text, "bytes", &bytes) || !frame_get_hex32(command->text, "crc", &crc) ||
            !frame_get_hex32(command->text, "paint", &paint) || paint > 0xFFu) {
            answer_nak(command->seq, "args", 0);
            return COMMAND_DONE;
        }
        if (bytes != FB_INPUT_BYTES) {
            answer_nak(command->seq, "size", FB_INPUT_BYTES);
            return COMMAND_DONE;
        }

        memset(fb_arena, (int)paint, FB_ARENA_BYTES);

        char *file = (char *)frame_find(command->text, "file");
        if (file) {
            /* Emulator fast path: the input waits in a host file. The path is
             * cut out of the command in place (no other field is read after it). */
            char *end = strchr(file, ' ');
            if (end)
                *end = '\0';
        }
        if (FB_INPUT_STREAMED)
            return stream_run(command, file, crc, (uint8_t)paint);

        uint8_t *input = (uint8_t *)fb_model_input();
        uint32_t got = 0;
        if (file) {
            if (read_host_file(file, input, bytes) != 0) {
                answer_nak(command->seq, "file", 0);
                return COMMAND_DONE;
            }
            got = bytes;
        }
        answer_ack(command->seq, got);

        if (receive_input(command, input, got, bytes) == COMMAND_SUPERSEDED) {
            if (command_is(command, "RUN"))
                continue; /* a fresh RUN: start over with its arguments */
            return COMMAND_SUPERSEDED;
        }
        if (frame_crc32(input, bytes) != crc) {
            answer_nak(command->seq, "crc", 0);
            return COMMAND_DONE;
        }
        measurement_t m;
        measure_pass(&m, (uint8_t)paint);
        measure_report(command->seq, &m, 0, (uint8_t)paint);
        return COMMAND_DONE;
    }
}

static command_outcome_t handle(fb_command_t *command)
{
    if (command_is(command, "RUN"))
        return handle_run(command);
    if (command_is(command, "EXIT")) {
        answer_simple("BYE", command->seq);
        hal_exit(HAL_EXIT_OK);
    }
    if (command_is(command, "PING"))
        answer_simple("PONG", command->seq);
    else if (command_is(command, "HELLO"))
        answer_ready(command->seq); /* the host missed or could not read the first one */
    else
        answer_nak(command->seq, "command", 0);
    return COMMAND_DONE;
}

void session_run(void)
{
    /* Static rather than on the stack: the stack watermark is the model's and
     * the app's frames, not the line buffer. */
    static fb_command_t command;

    answer_ready(0);
    command_outcome_t outcome = COMMAND_DONE;
    for (;;) {
        if (outcome == COMMAND_DONE && !command_receive(&command)) {
            answer_nak(command.seq, "frame", 0);
            continue;
        }
        outcome = handle(&command);
    }
}

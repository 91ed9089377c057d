/*
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
 *   send the same NEED again (FB_NEED_RETRIES times, then the read fails and
 *   the model returns a non-zero status). The RUN again with the run's own
 *   seq means the host lost the ACK: the device says ACK got=0 and the NEED
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
 */
#include "stream.h"

#include "hal.h"
#include "measure.h"

/* req= stays within what frame_get_u32 parses (9 digits). */
#define MAX_REQ 999999999u

#ifdef FB_MODEL_ERR_INPUT
_Static_assert(FB_MODEL_ERR_INPUT == FB_INPUT_READ_FAILED,
               "fb_model.h and fb_protocol.h disagree on the status of a failed input read");
#endif

/* The run in progress. The generated code calls fb_model_read_input() with a
 * fixed signature, so the run's context cannot be passed to it: stream_run()
 * puts it here for the duration of the run. A static rather than a pointer
 * to the caller's: the checks each read makes inside the timed run stay as
 * cheap as they were. */
static struct {
    fb_command_t *command; /* the session's, handed over for the run; NULL: no run, reads fail */
    int file;              /* hal_host_open's handle, or -1: ask the host with NEED */
    int superseded;        /* the host sent another command mid-run: it is in *command */
    uint32_t seq;          /* the RUN's seq: ACK, NEED and RESULT echo it */
    uint32_t req;          /* NEED counter, never reset (not even between runs): a late DATA never matches */
    uint64_t io_ticks;     /* time spent in fb_model_read_input this run */
} run = {NULL, -1, 0, 0, 0, 0};

static void send_need(uint32_t req, uint32_t offset, uint32_t len)
{
    frame_writer_t w;
    answer_begin(&w, "NEED", run.seq);
    frame_field_u64(&w, "req", req);
    frame_field_u64(&w, "off", offset);
    frame_field_u64(&w, "len", len);
    frame_end(&w);
}

/* One NEED/DATA exchange over the UART: `len` (<= FB_MAX_CHUNK_BYTES) input
 * bytes from `offset` into `dst`. 0 on success, -1 when the answers stayed
 * damaged or wrong, or the host gave up on the run (run.superseded). */
static int need_piece(uint32_t offset, int8_t *dst, uint32_t len)
{
    fb_command_t *command = run.command;
    run.req = run.req >= MAX_REQ ? 1u : run.req + 1u;
    for (int attempt = 0; attempt <= FB_NEED_RETRIES; attempt++) {
        send_need(run.req, offset, len);
        for (;;) {
            if (!command_receive(command))
                break; /* damaged: ask again */
            if (command_is(command, "DATA")) {
                uint32_t req, off;
                const char *hex = frame_find(command->text, "hex");
                size_t decoded;
                if (!frame_get_u32(command->text, "req", &req))
                    break;
                if (req != run.req || command->seq != run.seq)
                    continue; /* late: an answer to an earlier NEED */
                if (!frame_get_u32(command->text, "off", &off) || off != offset || !hex ||
                    !frame_hex_decode(hex, (uint8_t *)dst, len, &decoded) || decoded != len)
                    break; /* not what was asked for: ask again */
                return 0;
            }
            if (command->seq == run.seq && command_is(command, "RUN")) {
                /* The host lost our ACK (or this NEED): say both again. */
                answer_ack(run.seq, 0);
                break;
            }
            if (command->seq == run.seq && command_is(command, "PING"))
                break; /* the host heard nothing (whole) for a while: say it again */
            /* Any other command: the host gave up on this run. */
            run.superseded = 1;
            return -1;
        }
    }
    return -1;
}

int fb_model_read_input(uint32_t offset, int8_t *dst, uint32_t len)
{
    if (!run.command || run.superseded || offset > (uint32_t)FB_INPUT_BYTES ||
        len > (uint32_t)FB_INPUT_BYTES - offset)
        return -1;
    uint64_t start = hal_time();
    int status = 0;
    if (run.file >= 0) {
        status = hal_host_read_at(run.file, offset, dst, len);
    } else {
        while (status == 0 && len > 0) {
            uint32_t n = len < FB_MAX_CHUNK_BYTES ? len : FB_MAX_CHUNK_BYTES;
            status = need_piece(offset, dst, n);
            offset += n;
            dst += n;
            len -= n;
        }
    }
    /* Input I/O is not inference: keep it out of the run's and the layer's time. */
    uint64_t spent = hal_time() - start;
    run.io_ticks += spent;
    measure_leave_out_of_layer(spent);
    return status == 0 ? 0 : -1;
}

/* CRC-32 of a host file, read in pieces (a streamed model has no input buffer).
 * Not inlined: its buffer must not stay in the frame that runs the model,
 * where the stack watermark would count it. */
__attribute__((noinline)) static int host_file_crc(int handle, uint32_t *crc)
{
    uint8_t piece[FB_MAX_CHUNK_BYTES];
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

command_outcome_t stream_run(fb_command_t *command, const char *path, uint32_t crc, uint8_t paint)
{
    uint32_t seq = command->seq;
    int file = -1;
    if (path) {
        file = hal_host_open(path, FB_INPUT_BYTES);
        if (file < 0) {
            answer_nak(seq, "file", 0);
            return COMMAND_DONE;
        }
        answer_ack(seq, FB_INPUT_BYTES);
        uint32_t file_crc;
        if (host_file_crc(file, &file_crc) != 0 || file_crc != crc) {
            hal_host_close(file);
            answer_nak(seq, "crc", 0);
            return COMMAND_DONE;
        }
    } else {
        answer_ack(seq, 0); /* no DATA phase: the model asks for its input (NEED) */
    }

    run.command = command;
    run.file = file;
    run.superseded = 0;
    run.seq = seq;
    run.io_ticks = 0;
    measurement_t m;
    measure_pass(&m, paint);
    run.command = NULL;
    command_outcome_t outcome = run.superseded ? COMMAND_SUPERSEDED : COMMAND_DONE;
    if (outcome == COMMAND_DONE)
        measure_report(seq, &m, run.io_ticks, paint);
    hal_host_close(run.file);
    run.file = -1;
    return outcome;
}

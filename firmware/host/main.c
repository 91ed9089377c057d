/* Host driver for generated models: reads inputs (FB_INPUT_BYTES each) from
 * stdin, runs the model on each, writes each output (FB_OUTPUT_BYTES) to stdout.
 * Lets the code generator and the plan be checked bit-exact on the host, and
 * profiled with valgrind, before any emulator is involved.
 *
 * A streamed model (FB_INPUT_STREAMED == 1) has no input buffer: each input
 * goes to a buffer here and the model reads pieces of it through
 * fb_model_read_input(), which checks that every read stays inside it. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fb_model.h"

#ifndef FB_INPUT_STREAMED
#define FB_INPUT_STREAMED 0 /* headers from before streamed input */
#endif

int fb_model_read_input(uint32_t offset, int8_t *dst, uint32_t len);

#if FB_INPUT_STREAMED
static int8_t host_input[FB_INPUT_BYTES];
#endif

int fb_model_read_input(uint32_t offset, int8_t *dst, uint32_t len)
{
#if FB_INPUT_STREAMED
    if (offset > (uint32_t)FB_INPUT_BYTES || len > (uint32_t)FB_INPUT_BYTES - offset)
        return -1;
    memcpy(dst, host_input + offset, len);
    return 0;
#else
    (void)offset; /* the model reads fb_model_input() instead */
    (void)dst;
    (void)len;
    return -1;
#endif
}

static int8_t *input_destination(void)
{
#if FB_INPUT_STREAMED
    return host_input;
#else
    return fb_model_input();
#endif
}

int main(void)
{
    for (;;) {
        size_t got = fread(input_destination(), 1, FB_INPUT_BYTES, stdin);
        if (got == 0)
            return 0;
        if (got != FB_INPUT_BYTES) {
            fprintf(stderr, "short input: %zu of %d bytes\n", got, FB_INPUT_BYTES);
            return 2;
        }
        int status = fb_model_run();
        if (status != 0) {
            fprintf(stderr, "fb_model_run failed with status %d\n", status);
            return 3;
        }
        for (int i = 0; i < FB_NUM_OUTPUTS; i++)   /* joined in order: FB_OUTPUT_BYTES */
            fwrite(fb_model_output(i), 1, fb_model_output_bytes[i], stdout);
        fflush(stdout);
    }
}

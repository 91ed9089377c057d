/* Host driver for generated models: reads inputs (FB_INPUT_BYTES each) from
 * stdin, runs the model on each, writes each output (FB_OUTPUT_BYTES) to stdout.
 * Lets the code generator and the plan be checked bit-exact on the host, and
 * profiled with valgrind, before any emulator is involved. */
#include <stdio.h>
#include "fb_model.h"

int main(void)
{
    for (;;) {
        size_t got = fread(fb_model_input(), 1, FB_INPUT_BYTES, stdin);
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
        fwrite(fb_model_output(), 1, FB_OUTPUT_BYTES, stdout);
        fflush(stdout);
    }
}

/*
 * Streamed input: a model that never holds its whole input reads pieces of it
 * while it runs, through fb_model_read_input(), from a host file or from the
 * host over the UART (NEED/DATA).
 */
#ifndef FB_STREAM_H
#define FB_STREAM_H

#include <stdint.h>

#include "command.h"
#include "fb_model.h"

#ifndef FB_INPUT_STREAMED
#define FB_INPUT_STREAMED 0 /* headers from before streamed input */
#endif

/* Generated code of a streamed model calls this (fb_model.h declares it);
 * defined for every model so that every model links. */
int fb_model_read_input(uint32_t offset, int8_t *dst, uint32_t len);

/* A RUN of a streamed model (`command`, arena already painted): no input
 * transfer, the model reads as it runs, from the host file `path` (NULL: from
 * the host, with NEED), then RESULT. `path` may point into command->text: it
 * is opened before anything else is received there. COMMAND_SUPERSEDED when
 * the host gave up on the run: its new command is in `command`. */
command_outcome_t stream_run(fb_command_t *command, const char *path, uint32_t crc, uint8_t paint);

#endif

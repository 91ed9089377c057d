/*
 * One command from the host, and the answers to it. Every answer echoes the
 * seq of the command it answers, so the host can skip a late answer to a
 * command it already gave up on.
 */
#ifndef FB_COMMAND_H
#define FB_COMMAND_H

#include <stdint.h>

#include "fb_protocol.h"
#include "frame.h"

typedef struct {
    char text[FB_LINE_CAPACITY]; /* the frame's body, NUL-terminated; "" when it arrived damaged */
    uint32_t seq;                /* its seq=; 0 when it arrived damaged or had none */
} fb_command_t;

/* How handling a command ended. */
typedef enum {
    COMMAND_DONE,       /* answered (or given up on): receive the next one */
    COMMAND_SUPERSEDED, /* the host sent another command before this one was
                         * done: it is in the fb_command_t now, not yet handled */
} command_outcome_t;

/* Waits for the next command; 0 when it arrived damaged. */
int command_receive(fb_command_t *command);
int command_is(const fb_command_t *command, const char *kind);

/* The answer's frame up to its own fields (the caller ends it: frame_end). */
void answer_begin(frame_writer_t *w, const char *kind, uint32_t seq);
void answer_simple(const char *kind, uint32_t seq);
void answer_ack(uint32_t seq, uint32_t got);
void answer_nak(uint32_t seq, const char *why, uint32_t want);

#endif

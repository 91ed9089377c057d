/*
 * The protocol's numbers, for both ends: the firmware includes this header and
 * the host (harness/targets/protocol.py) reads it, so each number is written
 * once. protocol.py's parser is strict: apart from the include guard, every
 * preprocessor line here must be
 *     #define FB_<NAME> <integer>
 * with a decimal integer (a u suffix allowed) or a negative one in
 * parentheses, optionally followed by a comment on the same line.
 */
#ifndef FB_PROTOCOL_H
#define FB_PROTOCOL_H

/* READY proto=: each end refuses the other's when they differ. */
#define FB_PROTOCOL_VERSION 1u

/* Input bytes in one DATA frame (READY chunk=); longer NEEDs are split. */
#define FB_MAX_CHUNK_BYTES 256u

/* The longest RUN file= path the host sends: the path stays in the RUN's own
 * line, which FB_LINE_CAPACITY holds with it (checked in session.c). */
#define FB_MAX_PATH_BYTES 255u

/* A received command's body: "DATA seq=<9 digits> req=<9> off=<9> hex=<512>"
 * with room to spare. */
#define FB_LINE_CAPACITY 640u

/* How often one NEED is repeated after damaged or wrong answers. */
#define FB_NEED_RETRIES 8

/* fb_model_run()'s status when a streamed model could not read its input (the
 * line failed, not the model): FB_MODEL_ERR_INPUT in the generated fb_model.h. */
#define FB_INPUT_READ_FAILED (-100)

#endif

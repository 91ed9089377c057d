/* The conversation with the host: one framed command at a time, answered. */
#ifndef FB_SESSION_H
#define FB_SESSION_H

/* Says READY, then handles the host's commands until EXIT ends the run. */
void session_run(void) __attribute__((noreturn));

#endif

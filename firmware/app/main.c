/*
 * The measurement firmware: set the board up, then talk to the host until it
 * ends the run (session.c; one pass measured in measure.c, streamed input in
 * stream.c, the framing in frame.c).
 */
#include "hal.h"
#include "session.h"

int main(void)
{
    hal_setup();
    session_run();
}
